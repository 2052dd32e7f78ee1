"""`run_batch`: the one function synthesis and evaluation call to run prompts on any backend.

    from ehrforge.llm import LLMConfig, Request, run_batch, score_choices
    cfg = LLMConfig(backend="transformers", model="runs/tiny-llama", max_new_tokens=64)
    responses = run_batch([Request(id="q1", messages=[{"role": "user", "content": "Summarise: ..."}])], cfg,
                          run=run, con=con)
    probs = [r.choice_probs for r in score_choices(requests, ["yes", "no"], cfg, run=run, con=con)]

Order of work: validate the requests, PHI guard (before any byte leaves), answer what the cache (llm.calls) has,
check the endpoint, then run the rest under the budget, saving each finished call as soon as it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Iterable

from ehrforge.config import config_hash
from ehrforge.errors import InputDataError
from ehrforge.llm.backends import Call, Result, get_backend, model_identity
from ehrforge.llm.budget import Budget
from ehrforge.llm.cache import CallStore, cache_key
from ehrforge.llm.config import LLMConfig
from ehrforge.llm.guard import check_phi
from ehrforge.llm.types import BudgetExceeded, Request, Response

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    """What one run_batch did. `n_calls` counts calls actually sent to the model (0 on a fully cached re-run)."""

    n_requests: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_calls: int = 0
    n_failed: int = 0
    n_skipped_budget: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0


def _as_requests(requests: Iterable[Request | dict]) -> list[Request]:
    out = [r if isinstance(r, Request) else Request.model_validate(r) for r in requests]
    seen: set[str] = set()
    dups = {r.id for r in out if r.id in seen or seen.add(r.id)}
    if dups:
        raise InputDataError(f"request ids must be unique within a batch (they tie answers to their source rows); "
                             f"duplicated: {sorted(dups)[:5]}")
    return out


def _params(req: Request, config: LLMConfig) -> dict:
    p = {
        "temperature": req.temperature if req.temperature is not None else config.temperature,
        "top_p": req.top_p if req.top_p is not None else config.top_p,
        "max_new_tokens": req.max_new_tokens or config.max_new_tokens,
        "seed": req.seed if req.seed is not None else config.seed,
        "logprobs": config.logprobs,
        "top_logprobs": config.top_logprobs if config.logprobs else 0,
    }
    if config.ignore_eos:
        p["ignore_eos"] = True
    if req.choices:
        # scoring ignores sampling: only the prompt, the choices and how many top tokens are looked at matter
        p = {"choices": list(req.choices), "seed": p["seed"], "top_logprobs": max(config.top_logprobs, 20)}
    return p


def _run_coro(coro):
    """asyncio.run, also from inside a running event loop (notebooks): then on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class _Runner:
    def __init__(self, config: LLMConfig, backend, store: CallStore, budget: Budget, run, stats: RunStats, bar):
        self.config, self.backend, self.store, self.budget = config, backend, store, budget
        self.run, self.stats, self.bar = run, stats, bar
        self.chash = config_hash(config)
        self.finished: dict[str, Result] = {}

    def _row(self, call: Call, result: Result, cost: float) -> dict:
        from ehrforge.warehouse import code_version

        response = {k: v for k, v in asdict(result).items() if k not in ("extra",)}
        return {
            "cache_key": call.key, "model_identity": self.backend.identity, "backend": self.config.backend,
            "model": self.config.model, "request_id": call.request_id,
            "request_json": json.dumps({"messages": call.messages, "params": call.params}, ensure_ascii=False),
            "response_text": result.text, "response_json": json.dumps(response, ensure_ascii=False),
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "latency_s": result.latency_s, "cost_usd": cost, "attempts": result.attempts,
            "status": "failed" if result.error else "ok", "error": result.error,
            "run_id": self.run.run_id if self.run is not None else None,
            "created_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            "code_version": code_version(), "config_hash": self.chash,
        }

    def save(self, done: list[tuple[Call, object, Result]]) -> None:
        rows = []
        for call, res, result in done:
            cost = self.budget.settle(res, result.prompt_tokens, result.completion_tokens)
            result.cost_usd = cost
            self.stats.n_calls += 1
            self.stats.n_failed += bool(result.error)
            self.stats.prompt_tokens += result.prompt_tokens
            self.stats.completion_tokens += result.completion_tokens
            self.stats.cost_usd += cost
            rows.append(self._row(call, result, cost))
            self.finished[call.key] = result
            if result.error:
                log.warning("call %s failed: %s", call.request_id, result.error)
        self.store.write(rows)  # one transaction per flush: a finished call is on disk before the next is sent
        self.bar.update(len(done))

    def _reserve(self, call: Call):
        max_new = call.params.get("max_new_tokens", 1) if not call.params.get("choices") else 1
        return self.budget.reserve(self.backend.count_prompt_tokens(call), max_new)

    # remote: bounded concurrency, each finished call saved at once
    async def run_async(self, todo: list[Call]) -> None:
        await self.backend.aopen()
        try:
            if self.config.check_endpoint:
                await self.backend.acheck()
            pending: dict[asyncio.Task, tuple[Call, object]] = {}
            queue = iter(todo)
            stopped = False
            while True:
                while not stopped and len(pending) < self.config.concurrency:
                    call = next(queue, None)
                    if call is None:
                        stopped = True
                        break
                    res = self._reserve(call)
                    if res is None:
                        stopped = True
                        break
                    pending[asyncio.create_task(self.backend.acall(call))] = (call, res)
                if not pending:
                    break
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self.save([(*pending.pop(t), t.result()) for t in done])
        finally:
            await self.backend.aclose()

    # in-process: batches of batch_size, each saved when generated
    def run_sync(self, todo: list[Call]) -> None:
        size = self.config.batch_size
        i = 0
        while i < len(todo):
            batch, reservations = [], []
            for call in todo[i:i + size]:
                res = self._reserve(call)
                if res is None:
                    break
                batch.append(call)
                reservations.append(res)
            if not batch:
                return
            results = self.backend.generate(batch)
            self.save(list(zip(batch, reservations, results)))
            if len(batch) < len(todo[i:i + size]):
                return
            i += size


def _response(req: Request, key: str, result: Result | None = None, row: dict | None = None) -> Response:
    if row is not None:
        data = json.loads(row["response_json"])
        return Response(request_id=req.id, text=row["response_text"], prompt_tokens=row["prompt_tokens"] or 0,
                        completion_tokens=row["completion_tokens"] or 0, latency_s=row["latency_s"] or 0.0,
                        cost_usd=row["cost_usd"] or 0.0, finish_reason=data.get("finish_reason"),
                        logprobs=data.get("logprobs"), choice_logprobs=data.get("choice_logprobs"),
                        cached=True, cache_key=key)
    return Response(request_id=req.id, text=result.text, prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens, latency_s=result.latency_s,
                    cost_usd=result.cost_usd, finish_reason=result.finish_reason, logprobs=result.logprobs,
                    choice_logprobs=result.choice_logprobs, error=result.error, cached=False, cache_key=key)


def run_batch(
    requests: Iterable[Request | dict],
    config: LLMConfig,
    run=None,
    con=None,
    progress: bool = True,
    stats: RunStats | None = None,
    db_path=None,
) -> list[Response]:
    """Run every request (answering from the cache where possible) and return one Response per request, in order.

    run: the caller's `warehouse.RunInfo`; stamped on cache rows and scopes the budget (earlier invocations of the
        same run count against the caps). con: the caller's open warehouse connection; without one the cache file
        (`db_path` or $EHRFORGE_DUCKDB) is opened and closed around each read and flush.
    Failed calls come back with `error` set (and are recorded, status='failed'); they are retried on the next run.
    Raises PHIGuardError before sending anything to an unapproved endpoint, EndpointUnreachable when nothing
    answers at base_url, and BudgetExceeded (after saving every finished call) when a cap stops the run.
    """
    from tqdm.auto import tqdm

    started = time.monotonic()
    stats = stats if stats is not None else RunStats()
    reqs = _as_requests(requests)
    check_phi(config, reqs)
    stats.n_requests = len(reqs)
    if not reqs:
        return []
    identity = model_identity(config)
    keyed = [(r, cache_key(identity, r.messages, _params(r, config))) for r in reqs]
    first: dict[str, Request] = {}
    for r, k in keyed:
        first.setdefault(k, r)
    stats.n_unique = len(first)
    store = CallStore(con, db_path)
    hits = store.lookup(list(first))
    stats.n_cached = len(hits)
    todo = [Call(key=k, request_id=r.id, messages=r.messages, params=_params(r, config))
            for k, r in first.items() if k not in hits]
    if config.backend != "openai":
        # similar lengths together: less padding per batch
        todo.sort(key=lambda c: (repr(sorted(c.params.items())), len(json.dumps(c.messages))))
    budget = Budget(config, store.spent(run.run_id if run is not None else None))
    runner = None
    if todo:
        backend = get_backend(config)
        with tqdm(total=len(todo), disable=not progress, desc=f"llm[{config.backend}]", unit="call") as bar:
            runner = _Runner(config, backend, store, budget, run, stats, bar)
            if hasattr(backend, "acall"):
                _run_coro(runner.run_async(todo))
            else:
                runner.run_sync(todo)
    finished = runner.finished if runner else {}
    out = []
    for r, k in keyed:
        if k in hits:
            out.append(_response(r, k, row=hits[k]))
        elif k in finished:
            out.append(_response(r, k, result=finished[k]))
    stats.n_skipped_budget = len(first) - len(hits) - len(finished)
    stats.wall_s = time.monotonic() - started
    log.info("llm run_batch: %d requests, %d cached, %d calls (%d failed), %d completion tokens in %.1fs",
             stats.n_requests, stats.n_cached, stats.n_calls, stats.n_failed, stats.completion_tokens, stats.wall_s)
    if stats.n_skipped_budget:
        raise BudgetExceeded(
            f"LLM budget reached: {budget.exhausted}. {len(out)} of {len(reqs)} requests answered and saved; "
            f"{stats.n_skipped_budget} not sent. Raise the cap (max_calls / max_tokens / max_cost_usd) and re-run: "
            "finished calls come from the cache.", responses=out, spent=budget.spent())
    return out


def score_choices(
    requests: Iterable[Request | dict],
    choices: list[str],
    config: LLMConfig,
    **kwargs,
) -> list[Response]:
    """Constrained scoring: for each request, log P(choice | prompt) for every choice, in `Response.choice_logprobs`
    (and `Response.choice_probs`, renormalised over the choices; `text` is the most likely choice).

    transformers / vllm: exact, teacher-forced over all tokens of each choice. openai: from the first generated
    token's top_logprobs (exact for one-token choices such as yes/no; max(top_logprobs, 20) tokens are requested).
    """
    reqs = [(r if isinstance(r, Request) else Request.model_validate(r)).model_copy(update={"choices": list(choices)})
            for r in requests]
    reqs = [Request.model_validate(r.model_dump()) for r in reqs]  # re-validate choices
    return run_batch(reqs, config, **kwargs)
