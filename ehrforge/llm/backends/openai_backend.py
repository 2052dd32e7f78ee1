"""Any OpenAI-compatible endpoint (OpenAI, Azure OpenAI's /openai/v1, a vLLM or `transformers serve` server) through
the `openai` async client. Concurrency is bounded by the runner; retries are ours (the client's own are off) so
that backoff, jitter and Retry-After are applied the same way everywhere and every attempt is counted."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time

from ehrforge.errors import ConfigError
from ehrforge.llm.backends import Call, Result, model_identity
from ehrforge.llm.config import LLMConfig
from ehrforge.llm.types import EndpointUnreachable, LLMError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def retry_after_s(exc) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` as seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so retries spread out but never hit 0."""
    ceiling = min(cap, base * (2 ** attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class OpenAIBackend:
    name = "openai"
    in_process = False

    def __init__(self, config: LLMConfig):
        self.config = config
        env = config.api_key_env
        if env:
            self.api_key = os.environ.get(env)
            if not self.api_key:
                raise ConfigError(f"api_key_env is {env!r} but that environment variable is not set; export it "
                                  "(never put keys in the YAML)")
        else:
            # local servers (vLLM, transformers serve) accept any key
            self.api_key = os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.identity = model_identity(config)
        self.client = None

    def count_prompt_tokens(self, call: Call) -> int:
        # No tokenizer for a remote model: a conservative estimate (BPE averages ~4 bytes/token on English;
        # 3 over-reserves a little so a cap is not overshot) plus the chat-format overhead per message.
        return sum(len(m["content"].encode()) // 3 + 8 for m in call.messages)

    async def aopen(self) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=self.config.base_url, api_key=self.api_key, max_retries=0,
                                         timeout=self.config.timeout_s)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def acheck(self) -> None:
        """Fail fast when nothing answers at base_url. Sends no prompt, so it runs after the PHI guard anyway."""
        import openai

        try:
            await self.client.models.list(timeout=min(self.config.timeout_s, 15.0))
        except openai.AuthenticationError as exc:
            raise LLMError(f"{self.config.base_url} rejected the API key (401). Set the right key in the environment "
                           f"variable named by api_key_env ({self.config.api_key_env or 'OPENAI_API_KEY'}).") from exc
        except openai.APIStatusError:
            return  # it answered (some servers do not implement /models); reachable is all we check
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise EndpointUnreachable(
                f"no OpenAI-compatible server answers at {self.config.base_url} ({type(exc).__name__}: {exc}). "
                "Start it first (e.g. `vllm serve <model> --port 8000` or `transformers serve <model dir>`), check "
                "base_url (it usually ends in /v1), or set check_endpoint: false to skip this check."
            ) from exc

    def _kwargs(self, call: Call) -> dict:
        p = call.params
        kw: dict = {"model": self.config.model, "messages": call.messages, "seed": p["seed"]}
        if p.get("choices"):
            kw.update(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=p["top_logprobs"])
            return kw
        kw.update(max_tokens=p["max_new_tokens"], temperature=p["temperature"], top_p=p["top_p"])
        if p.get("logprobs"):
            kw.update(logprobs=True, top_logprobs=p["top_logprobs"])
        if p.get("ignore_eos"):
            kw["extra_body"] = {"ignore_eos": True}  # vLLM extension; other servers ignore it
        return kw

    async def acall(self, call: Call) -> Result:
        import openai

        cfg = self.config
        kwargs = self._kwargs(call)
        start = time.monotonic()
        last_error = "not attempted"
        for attempt in range(cfg.max_retries + 1):
            try:
                completion = await self.client.chat.completions.create(**kwargs, timeout=cfg.timeout_s)
                result = self._parse(completion, call)
                result.latency_s = time.monotonic() - start
                result.attempts = attempt + 1
                return result
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {str(exc)[:500]}"
                if exc.status_code not in RETRY_STATUS:
                    return Result(error=last_error, attempts=attempt + 1, latency_s=time.monotonic() - start)
                wait = retry_after_s(exc)
            except openai.APITimeoutError:
                last_error = f"timeout after {cfg.timeout_s:g}s (raise timeout_s if the server is just slow)"
                wait = None
            except openai.APIConnectionError as exc:
                last_error = f"connection error: {exc}"
                wait = None
            except LLMError as exc:  # a reply we cannot use (e.g. no choices); retrying will not help
                return Result(error=str(exc), attempts=attempt + 1, latency_s=time.monotonic() - start)
            except Exception as exc:  # noqa: BLE001 - e.g. a malformed reply: recorded on the call, never dropped
                log.exception("call %s: unexpected error", call.request_id)
                return Result(error=f"{type(exc).__name__}: {exc}", attempts=attempt + 1,
                              latency_s=time.monotonic() - start)
            if attempt == cfg.max_retries:
                break
            delay = wait if wait is not None else backoff_s(attempt, cfg.backoff_base_s, cfg.backoff_max_s)
            log.debug("call %s: %s; retry %d in %.2fs", call.request_id, last_error, attempt + 1, delay)
            await asyncio.sleep(delay)
        return Result(error=f"gave up after {cfg.max_retries + 1} attempt(s): {last_error}",
                      attempts=cfg.max_retries + 1, latency_s=time.monotonic() - start)

    def _parse(self, completion, call: Call) -> Result:
        if not completion.choices:
            raise LLMError(f"the server returned no choices for request {call.request_id}")
        choice = completion.choices[0]
        usage = completion.usage
        logprobs = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            logprobs = [{"token": t.token, "logprob": t.logprob,
                         "top_logprobs": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])]}
                        for t in content]
        result = Result(
            text=choice.message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            finish_reason=choice.finish_reason,
            logprobs=logprobs if call.params.get("logprobs") or call.params.get("choices") else None,
        )
        if call.params.get("choices"):
            if not logprobs:
                raise LLMError(
                    f"choice scoring needs logprobs but {self.config.base_url} returned none (request "
                    f"{call.request_id}); use a server that supports `logprobs`/`top_logprobs` (vLLM, OpenAI) "
                    "or the transformers backend")
            result.choice_logprobs = match_choices(logprobs[0]["top_logprobs"], call.params["choices"])
            result.text = max(result.choice_logprobs, key=lambda c: result.choice_logprobs[c])
        return result


def match_choices(top: list[dict], choices: list[str]) -> dict[str, float]:
    """log P(choice) from the first generated token's top logprobs.

    A choice's probability is the summed probability of the top tokens that spell it, ignoring surrounding
    whitespace (so 'yes' and ' yes' add up; case matters, as in the transformers backend). If no token spells it
    exactly, case-insensitive matches are used, then a first-token prefix that belongs to this choice only. A choice
    absent from the top-k gets -inf. Exact for one-token choices (yes/no); for longer ones it is the probability of
    their first token."""
    def prob(tokens: list[float]) -> float:
        return math.log(sum(math.exp(x) for x in tokens)) if tokens else -math.inf

    out: dict[str, float] = {}
    lower = [c.strip().lower() for c in choices]
    for c in choices:
        hits = [t["logprob"] for t in top if t["token"].strip() == c.strip()]
        if not hits:
            hits = [t["logprob"] for t in top if t["token"].strip().lower() == c.strip().lower()]
        if not hits:
            hits = [t["logprob"] for t in top
                    if (tl := t["token"].strip().lower()) and c.strip().lower().startswith(tl)
                    and sum(o.startswith(tl) for o in lower) == 1]
        out[c] = prob(hits)
    if all(v == -math.inf for v in out.values()):
        raise LLMError(f"none of the choices {choices} is among the top-{len(top)} first tokens; raise top_logprobs "
                       "or check that the prompt asks for exactly one of them")
    return out
