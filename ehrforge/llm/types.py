"""What goes into the client and what comes out, plus the errors it raises."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ehrforge.errors import EhrforgeError

ROLES = ("system", "user", "assistant", "tool")


class LLMError(EhrforgeError):
    pass


class PHIGuardError(LLMError):
    """Raised before any byte is sent when warehouse text would go to an endpoint the config does not approve."""

    exit_code = 2  # a config problem: approve the endpoint or point the job at an approved one


class EndpointUnreachable(LLMError):
    pass


class BudgetExceeded(LLMError):
    """Raised after every finished call has been saved. `responses` holds the finished and cached answers (in
    request order, requests that were not run are absent); re-running with a larger cap resumes from the cache."""

    def __init__(self, message: str, responses: list["Response"], spent: dict):
        super().__init__(message)
        self.responses = responses
        self.spent = spent


class Request(BaseModel):
    """One prompt. `id` is the caller's lineage key (e.g. an instruction_id); it is not part of the cache key."""

    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[dict[str, Any]]
    contains_phi: bool = True
    # the warehouse tables ("schema.table") the request's text was built from; the PHI guard derives the request's
    # provenance (public / mimic) from them (ehrforge.provenance), whatever contains_phi says
    sources: list[str] = []
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    choices: list[str] | None = None  # constrained scoring instead of generation (see score_choices)

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[dict]) -> list[dict]:
        if not v:
            raise ValueError("messages is empty; give at least one {'role': 'user', 'content': ...}")
        for i, m in enumerate(v):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(
                    f"message {i} must be a dict with role in {ROLES} and string content, got {str(m)[:120]!r}"
                )
        return v

    @field_validator("choices")
    @classmethod
    def _choices(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(v) < 2 or len(set(v)) != len(v) or not all(isinstance(c, str) and c for c in v)):
            raise ValueError(f"choices must be at least two distinct non-empty strings, got {v!r}")
        return v


class Response(BaseModel):
    request_id: str
    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    finish_reason: str | None = None
    # per generated token: {"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}
    logprobs: list[dict] | None = None
    # choice scoring: log P(choice | prompt) and the probabilities renormalised over the choices
    choice_logprobs: dict[str, float] | None = None
    cached: bool = False
    error: str | None = None
    cache_key: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def choice_probs(self) -> dict[str, float] | None:
        if not self.choice_logprobs:
            return None
        finite = [v for v in self.choice_logprobs.values() if v is not None and math.isfinite(v)]
        if not finite:
            return None
        top = max(finite)
        exp = {k: (math.exp(v - top) if v is not None and math.isfinite(v) else 0.0)
               for k, v in self.choice_logprobs.items()}
        total = sum(exp.values())
        return {k: v / total for k, v in exp.items()}
