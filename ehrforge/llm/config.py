"""LLM client configuration: which backend, which model, how to sample, what a run may spend, where text may go.

    backend: openai                       # openai | transformers | vllm
    model: my-served-model
    base_url: http://127.0.0.1:8000/v1
    approved_endpoints:                   # only needed for non-loopback endpoints
      - base_url: https://my-resource.openai.azure.com/openai/v1
        attestation: {zero_data_retention: true, no_human_review: true, agreement: "BAA 2026-03"}
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REQUIRED_ATTESTATIONS = ("zero_data_retention", "no_human_review")


def normalize_url(url: str) -> str:
    """Canonical form of an endpoint URL so that `HTTP://Host:443/v1/` and `http://host:443/v1` compare equal."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


class Attestation(BaseModel):
    """What the data-use agreement with an external endpoint guarantees. Both fields must be true."""

    model_config = ConfigDict(extra="allow")

    zero_data_retention: bool = False
    no_human_review: bool = False


class ApprovedEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    attestation: Attestation

    @model_validator(mode="after")
    def _attested(self) -> "ApprovedEndpoint":
        missing = [k for k in REQUIRED_ATTESTATIONS if not getattr(self.attestation, k)]
        if missing:
            raise ValueError(
                f"endpoint {self.base_url} is listed in approved_endpoints but its attestation does not state "
                f"{', '.join(f'{k}: true' for k in missing)}. Patient text may only go to services with zero data "
                "retention and no human review (PhysioNet guidance); set them only if the agreement says so."
            )
        return self


class Prices(BaseModel):
    """USD per 1,000 tokens, for the cost estimate and the `max_cost_usd` cap."""

    model_config = ConfigDict(extra="forbid")

    prompt_per_1k: float = Field(0.0, ge=0)
    completion_per_1k: float = Field(0.0, ge=0)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "transformers", "vllm"] = "transformers"
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    adapter: str | None = None

    # sampling (seeded wherever the backend supports it)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    seed: int = 0
    ignore_eos: bool = False  # always generate max_new_tokens (benchmarks; vLLM's ignore_eos)
    logprobs: bool = False
    top_logprobs: int = Field(5, ge=0, le=1000)

    # throughput / reliability
    concurrency: int = Field(8, ge=1, le=1024)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    check_endpoint: bool = True
    batch_size: int = Field(16, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"
    generation_mode: Literal["auto", "dynamic", "static", "compile"] = "auto"
    max_model_len: int | None = None  # vllm only
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)  # vllm only

    # budget, per run (calls answered from the cache cost nothing)
    max_calls: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    max_cost_usd: float | None = Field(None, ge=0)
    prices: Prices = Prices()

    # PHI guard
    approved_endpoints: list[ApprovedEndpoint] = []
    approve_loopback: bool = True
    # endpoints that may receive requests built ONLY from public text (no attestation needed); whether a request
    # is public is derived from the warehouse tables it was built from (Request.sources, ehrforge.provenance)
    public_data_endpoints: list[str] = []

    @field_validator("public_data_endpoints")
    @classmethod
    def _public_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"public_data_endpoints entry {url!r} must be an http(s) URL such as "
                                 "https://api.example.com/v1")
        return [u.rstrip("/") for u in v]

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {v!r} must be an http(s) URL such as http://127.0.0.1:8000/v1")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _cross(self) -> "LLMConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "backend openai needs base_url (e.g. http://127.0.0.1:8000/v1 for a local vLLM server, "
                "https://api.openai.com/v1 for OpenAI)"
            )
        if self.backend != "openai" and self.base_url:
            raise ValueError(f"base_url is only used by backend openai; backend {self.backend} runs in-process")
        if self.backend == "openai" and self.adapter:
            raise ValueError("adapter applies to in-process backends; for a vLLM server name the LoRA module as model")
        if self.max_cost_usd is not None and not (self.prices.prompt_per_1k or self.prices.completion_per_1k):
            raise ValueError("max_cost_usd needs prices (prices.prompt_per_1k / prices.completion_per_1k)")
        return self

    def sampling(self) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }
