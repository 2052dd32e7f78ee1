"""The openai backend against real OpenAI-compatible servers on real sockets: our recording server over the tiny
model (faults, what was received) and `transformers serve`. Covers concurrency, retries with Retry-After, recorded
failures, timeouts, an unreachable endpoint, the PHI guard, choice scoring, and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import socket
import time
from pathlib import Path

import duckdb
import pytest

from ehrforge.llm import (EndpointUnreachable, LLMConfig, PHIGuardError, Request, RunStats, run_batch,
                          score_choices)

HERE = Path(__file__).parent


def reqs(n, prefix="q", **kw):
    return [Request(id=f"{prefix}{i}", messages=[{"role": "user", "content": f"{prefix} patient {i}: chest pain?"}],
                    **kw)
            for i in range(n)]


def ocfg(server, tiny_model, **kw):
    base = {"backend": "openai", "base_url": server.base_url, "model": str(tiny_model), "max_new_tokens": 6,
            "concurrency": 4, "max_retries": 3, "backoff_base_s": 0.05, "timeout_s": 30}
    return LLMConfig(**(base | kw))


def test_generates_concurrently_and_caches(server, tiny_model, db_path):
    stats = RunStats()
    out = run_batch(reqs(10), ocfg(server, tiny_model), progress=False, stats=stats)
    assert stats.n_calls == 10 and all(r.ok and not r.cached for r in out)
    assert all(r.prompt_tokens > 0 and 0 < r.completion_tokens <= 6 for r in out)
    got = server.received()
    assert len(got) == 10 and got[0]["body"]["seed"] == 0 and got[0]["body"]["max_tokens"] == 6
    again = RunStats()
    out2 = run_batch(reqs(10), ocfg(server, tiny_model), progress=False, stats=again)
    assert again.n_calls == 0 and len(server.received()) == 10  # the cached re-run sends nothing
    assert [r.text for r in out2] == [r.text for r in out] and all(r.cached for r in out2)


def test_retries_honour_retry_after(server, tiny_model, db_path):
    server.configure(plan=[{"status": 429, "retry_after": 1}, {"status": 503}])
    out = run_batch(reqs(1), ocfg(server, tiny_model, concurrency=1), progress=False)
    assert out[0].ok
    t = [r["t"] for r in server.received()]
    assert len(t) == 3
    assert t[1] - t[0] >= 0.95  # waited as long as Retry-After asked
    with duckdb.connect(str(db_path)) as con:
        assert con.execute("select attempts, status from llm.calls").fetchall() == [(3, "ok")]


def test_failures_are_recorded_and_retried_next_run(server, tiny_model, db_path):
    server.configure(plan=[{"status": 500}] * 3 + [{"status": 400}])
    cfg = ocfg(server, tiny_model, concurrency=1, max_retries=2)
    out = run_batch(reqs(2), cfg, progress=False)
    assert "gave up after 3 attempt(s): HTTP 500" in out[0].error
    assert out[1].error.startswith("HTTP 400")  # a client error is not retried
    assert len(server.received()) == 4
    with duckdb.connect(str(db_path)) as con:
        rows = con.execute("select request_id, status, attempts, error is not null from llm.calls "
                           "order by request_id").fetchall()
    assert rows == [("q0", "failed", 3, True), ("q1", "failed", 1, True)]
    out = run_batch(reqs(2), cfg, progress=False)  # failures are not cached: tried again
    assert all(r.ok and not r.cached for r in out)


def test_timeout_is_a_recorded_failure(server, tiny_model, db_path):
    server.configure(delay_s=2.0)
    out = run_batch(reqs(1), ocfg(server, tiny_model, timeout_s=0.3, max_retries=1), progress=False)
    assert "timeout after 0.3s" in out[0].error and len(server.received()) == 2


def test_unreachable_endpoint_fails_fast(tiny_model, db_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m")
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable, match="no OpenAI-compatible server answers"):
        run_batch(reqs(3), cfg, progress=False)
    assert time.monotonic() - t0 < 20


def test_phi_guard_sends_nothing_to_an_unapproved_endpoint(server, tiny_model, db_path):
    # the loopback server configured as if it were external: loopback approval switched off. (Tests send
    # traffic to loopback only, never to another address of the machine.)
    cfg = ocfg(server, tiny_model, approve_loopback=False)
    with pytest.raises(PHIGuardError, match="approved_endpoints") as exc:
        run_batch(reqs(3), cfg, progress=False)
    assert "nothing was sent" in str(exc.value) and cfg.base_url in str(exc.value)
    assert server.received(path=None) == []  # not even the /models probe

    # mixed batch: one PHI request poisons the batch, still nothing is sent
    with pytest.raises(PHIGuardError):
        run_batch(reqs(2, contains_phi=False) + reqs(1, prefix="note"), cfg, progress=False)
    assert server.received(path=None) == []

    # synthetic text may go; approving the endpoint with an attestation lets PHI through
    assert all(r.ok for r in run_batch(reqs(2, contains_phi=False), cfg, progress=False))
    approved = LLMConfig.model_validate(cfg.model_dump() | {"approved_endpoints": [
        {"base_url": cfg.base_url, "attestation": {"zero_data_retention": True, "no_human_review": True}}]})
    assert all(r.ok for r in run_batch(reqs(3, prefix="ok"), approved, progress=False))
    assert len(server.received()) == 5


def test_choice_scores_come_from_the_served_logprobs(server, tiny_model, db_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ehrforge.llm.backends.openai_backend import match_choices

    cfg = ocfg(server, tiny_model, top_logprobs=1000)  # the tiny vocab (320) fits in top_logprobs
    remote = score_choices(reqs(3), ["yes", "no"], cfg, progress=False)
    body = server.received()[0]["body"]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 1000
    # expected: the documented matching rule applied to the model's full next-token distribution
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    for req, r in zip(reqs(3), remote):
        ids = tok(tok.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False),
                  add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
        full = [{"token": tok.decode([i]), "logprob": float(v)} for i, v in enumerate(logp.tolist())]
        want = match_choices(full, ["yes", "no"])
        assert r.choice_logprobs == pytest.approx(want, abs=1e-4)
        assert sum(r.choice_probs.values()) == pytest.approx(1.0) and r.text in ("yes", "no")


def test_match_choices_rule():
    import math

    from ehrforge.llm.backends.openai_backend import match_choices

    top = [{"token": "yes", "logprob": math.log(0.3)}, {"token": " yes", "logprob": math.log(0.1)},
           {"token": "Yes", "logprob": math.log(0.2)}, {"token": "N", "logprob": math.log(0.05)},
           {"token": "maybe", "logprob": math.log(0.01)}]
    got = match_choices(top, ["yes", "No"])
    assert math.exp(got["yes"]) == pytest.approx(0.4)  # 'yes' + ' yes', not 'Yes'
    assert math.exp(got["No"]) == pytest.approx(0.05)  # unique prefix 'N'
    assert match_choices(top, ["Yes", "absent"])["absent"] == -math.inf
    with pytest.raises(Exception, match="none of the choices"):
        match_choices(top, ["alpha", "beta"])


def test_sigkill_mid_run_then_resume_makes_no_duplicate_calls(server, tiny_model, db_path):
    n = 30
    server.configure(delay_s=0.15)
    cmd = [sys.executable, str(HERE / "llm_worker.py"), server.base_url, str(tiny_model), str(n), "1"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while len(server.received()) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = [r["body"]["messages"][0]["content"] for r in server.received()]
    assert 8 <= len(first) < n, "the worker should have been killed mid-run"
    with duckdb.connect(str(db_path)) as con:
        saved = {r[0] for r in con.execute("select json_extract_string(request_json, '$.messages[0].content') "
                                           "from llm.calls where status = 'ok'").fetchall()}
    assert len(saved) >= len(first) - 1  # at most the one call in flight was lost

    server.configure(delay_s=0.0, reset=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    second = [r["body"]["messages"][0]["content"] for r in server.received()]
    assert not set(second) & saved, "a saved answer was requested again"
    assert len(second) == len(set(second)) == n - len(saved)
    assert f"calls={n - len(saved)} cached={len(saved)}" in done.stdout
    with duckdb.connect(str(db_path)) as con:
        assert con.execute("select count(*), count(distinct cache_key) from llm.calls where status='ok'"
                           ).fetchall() == [(n, n)]


@pytest.mark.slow
def test_against_transformers_serve(transformers_serve, tiny_model, db_path):
    cfg = LLMConfig(backend="openai", base_url=transformers_serve, model=str(tiny_model), max_new_tokens=5,
                    concurrency=2)
    stats = RunStats()
    out = run_batch(reqs(4), cfg, progress=False, stats=stats)
    assert stats.n_calls == 4 and all(r.ok for r in out), [r.error for r in out]
    assert all(r.prompt_tokens > 0 and r.completion_tokens == 5 for r in out)
    again = RunStats()
    run_batch(reqs(4), cfg, progress=False, stats=again)
    assert again.n_calls == 0 and again.n_cached == 4


def test_budget_under_concurrency_never_overshoots(server, tiny_model, db_path):
    from ehrforge.llm import BudgetExceeded

    with pytest.raises(BudgetExceeded, match="max_calls=3") as exc:
        run_batch(reqs(8), ocfg(server, tiny_model, concurrency=4, max_calls=3), progress=False)
    assert len(server.received()) == 3 and len(exc.value.responses) == 3
    with duckdb.connect(str(db_path)) as con:
        assert con.execute("select count(*) from llm.calls where status = 'ok'").fetchall() == [(3,)]


def test_works_inside_a_running_event_loop_and_needs_the_named_key(server, tiny_model, db_path, monkeypatch):
    import asyncio

    from ehrforge.errors import ConfigError

    async def main():  # e.g. a notebook: run_batch is synchronous and must not clash with the caller's loop
        return run_batch(reqs(2), ocfg(server, tiny_model), progress=False)

    assert all(r.ok for r in asyncio.run(main()))
    monkeypatch.delenv("EHRFORGE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="EHRFORGE_TEST_KEY"):
        run_batch(reqs(1, prefix="k"), ocfg(server, tiny_model, api_key_env="EHRFORGE_TEST_KEY"), progress=False)
    monkeypatch.setenv("EHRFORGE_TEST_KEY", "sk-test")
    assert run_batch(reqs(1, prefix="k"), ocfg(server, tiny_model, api_key_env="EHRFORGE_TEST_KEY"),
                     progress=False)[0].ok
