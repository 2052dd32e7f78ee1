"""The transformers backend through run_batch: batched output equals one-prompt-at-a-time generate, the cache
answers re-runs, seeds are honoured, logprobs and choice scores match the model's own logits, budgets stop cleanly."""

from __future__ import annotations

import math

import duckdb
import pytest

from ehrforge import warehouse
from ehrforge.llm import BudgetExceeded, LLMConfig, Prices, Request, RunStats, run_batch, score_choices

PROMPTS = ["yes", "the patient was admitted with chest pain; answer yes or no.",
           "discharge summary: stable", "lactate 2.1 mmol/L, heart rate 88. follow up in clinic, yes or no?", "no"]


def reqs(n=len(PROMPTS), **kw):
    return [Request(id=f"r{i}", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + " #" * (i // 5)}],
                    **kw) for i in range(n)]


@pytest.fixture
def cfg(tiny_model):
    return LLMConfig(backend="transformers", model=str(tiny_model), max_new_tokens=12, batch_size=3, device="cpu")


def naive(tiny_model, messages, max_new_tokens, **gen):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    out = []
    for m in messages:
        ids = tok(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False), return_tensors="pt",
                  add_special_tokens=False)
        with torch.inference_mode():
            seq = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, ids["input_ids"].shape[1]:].tolist()
        if tok.eos_token_id in seq:
            seq = seq[:seq.index(tok.eos_token_id)]
        out.append(tok.decode(seq, skip_special_tokens=True))
    return out, tok, model


def test_batched_equals_one_at_a_time_and_rerun_is_cached(cfg, tiny_model, db_path):
    requests = reqs()
    stats = RunStats()
    first = run_batch(requests, cfg, progress=False, stats=stats)
    assert stats.n_calls == 5 and stats.n_cached == 0
    expected, _, _ = naive(tiny_model, [r.messages for r in requests], cfg.max_new_tokens)
    assert [r.text for r in first] == expected  # left padding + batching changes nothing under greedy decoding
    assert all(r.ok and not r.cached and r.prompt_tokens > 0 and 0 < r.completion_tokens <= 12 for r in first)
    assert [r.request_id for r in first] == [r.id for r in requests]

    again = RunStats()
    second = run_batch(requests, cfg, progress=False, stats=again)
    assert again.n_calls == 0 and again.n_cached == 5
    assert [r.text for r in second] == expected and all(r.cached for r in second)
    with duckdb.connect(str(db_path)) as con:
        rows = con.execute("select status, count(*), count(distinct cache_key) from llm.calls group by 1").fetchall()
    assert rows == [("ok", 5, 5)]


def test_duplicates_run_once_and_keys_depend_on_sampling(cfg, db_path):
    msgs = [{"role": "user", "content": "yes"}]
    stats = RunStats()
    out = run_batch([Request(id="a", messages=msgs), Request(id="b", messages=msgs)], cfg, progress=False, stats=stats)
    assert stats.n_calls == 1 and out[0].text == out[1].text and out[0].cache_key == out[1].cache_key
    hot = cfg.model_copy(update={"temperature": 1.0, "seed": 1})
    s1, s2 = RunStats(), RunStats()
    a = run_batch([Request(id="a", messages=msgs)], hot, progress=False, stats=s1)[0]
    b = run_batch([Request(id="a", messages=msgs, seed=2)], hot, progress=False, stats=s2)[0]
    assert s1.n_calls == 1 and s2.n_calls == 1 and a.cache_key != b.cache_key != out[0].cache_key
    from ehrforge.llm.backends import unload_backends

    unload_backends()  # a fresh process would give the same sample for the same seed
    assert run_batch([Request(id="a", messages=msgs)], hot, progress=False, con=None)[0].cached
    same_seed = run_batch([Request(id="a2", messages=msgs, seed=1, max_new_tokens=12)],
                          hot.model_copy(update={"seed": 99}), progress=False)[0]
    assert same_seed.cached and same_seed.text == a.text  # the request's seed overrides the config's


def test_logprobs_and_choice_scores_match_the_logits(cfg, tiny_model, db_path):
    import torch

    lp_cfg = cfg.model_copy(update={"logprobs": True, "top_logprobs": 3, "max_new_tokens": 4})
    r = run_batch(reqs(2), lp_cfg, progress=False)[1]
    assert len(r.logprobs) == r.completion_tokens and len(r.logprobs[0]["top_logprobs"]) == 3
    # greedy: the chosen token is the top-1 token
    assert r.logprobs[0]["logprob"] == pytest.approx(r.logprobs[0]["top_logprobs"][0]["logprob"], abs=1e-5)

    scored = score_choices(reqs(3), ["yes", "no", "maybe so"], cfg, progress=False)
    _, tok, model = naive(tiny_model, [], 1)
    for req, resp in zip(reqs(3), scored):
        assert set(resp.choice_logprobs) == {"yes", "no", "maybe so"}
        assert sum(resp.choice_probs.values()) == pytest.approx(1.0)
        prompt = tok(tok.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
        for choice in ("yes", "maybe so"):
            cid = tok(choice, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(model(torch.tensor([prompt + cid])).logits[0].float(), -1)
            want = sum(float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(cid))
            assert resp.choice_logprobs[choice] == pytest.approx(want, abs=1e-4)
        assert resp.text == max(resp.choice_probs, key=resp.choice_probs.get)


def test_budget_stops_cleanly_and_resumes(cfg, db_path):
    con = warehouse.connect(db_path)
    run = warehouse.start_run(con, job="test-llm", config={"t": 1})
    capped = cfg.model_copy(update={"max_calls": 4})
    with pytest.raises(BudgetExceeded, match="max_calls=4") as exc:
        run_batch(reqs(7), capped, run=run, con=con, progress=False)
    assert len(exc.value.responses) == 4 and exc.value.spent["calls"] == 4
    n = con.execute("select count(*) from llm.calls where run_id = ? and status = 'ok'", [run.run_id]).fetchall()
    assert n == [(4,)]
    # same run, same cap: the 4 earlier calls count, so nothing more is sent
    with pytest.raises(BudgetExceeded):
        run_batch(reqs(7), capped, run=run, con=con, progress=False)
    stats = RunStats()
    out = run_batch(reqs(7), cfg.model_copy(update={"max_calls": 7}), run=run, con=con, progress=False, stats=stats)
    assert stats.n_cached == 4 and stats.n_calls == 3 and all(r.ok for r in out)

    # token cap: worst case (prompt + max_new_tokens) is reserved, so the cap is never overshot
    run2 = warehouse.start_run(con, job="test-llm", config={"t": 2})
    tokcap = cfg.model_copy(update={"max_tokens": 100, "seed": 5})
    with pytest.raises(BudgetExceeded, match="max_tokens=100") as exc:
        run_batch(reqs(7), tokcap, run=run2, con=con, progress=False)
    used = con.execute("select sum(prompt_tokens + completion_tokens) from llm.calls where run_id = ?",
                       [run2.run_id]).fetchall()[0][0]
    assert 0 < used <= 100 and exc.value.spent["tokens"] == used

    costcap = cfg.model_copy(update={"seed": 6, "max_cost_usd": 0.05,
                                     "prices": Prices(prompt_per_1k=1.0, completion_per_1k=2.0)})
    with pytest.raises(BudgetExceeded, match="max_cost_usd") as exc:
        run_batch(reqs(7), costcap, con=con, progress=False)
    assert 0 < exc.value.spent["cost_usd"] <= 0.05
    assert all(math.isclose(r.cost_usd, r.prompt_tokens / 1000 + 2 * r.completion_tokens / 1000)
               for r in exc.value.responses)
    con.close()


def test_bad_model_path_is_a_clear_error(tmp_path, db_path):
    from ehrforge.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot load model"):
        run_batch(reqs(1), LLMConfig(model=str(tmp_path / "nope"), device="cpu"), progress=False)


def test_static_cache_mode_gives_the_same_answers(cfg, db_path):
    dynamic = run_batch(reqs(), cfg.model_copy(update={"generation_mode": "dynamic"}), progress=False)
    # same cache key (the mode is not part of the model identity), so use another db to force generation
    from ehrforge.llm.backends import get_backend

    static_cfg = cfg.model_copy(update={"generation_mode": "static", "logprobs": True})
    backend = get_backend(static_cfg)
    assert backend.mode == "static"
    out = run_batch(reqs(), static_cfg, progress=False, db_path=db_path.parent / "other.duckdb")
    assert [r.text for r in out] == [r.text for r in dynamic] and all(not r.cached for r in out)
    assert all(len(r.logprobs) == r.completion_tokens for r in out)


@pytest.mark.slow
def test_cli(tiny_model, db_path):
    import json
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ehrforge.llm", *args], capture_output=True, text=True,
                              timeout=300)

    done = cli(f"model={tiny_model}", "max_new_tokens=4", "device=cpu", "--prompt", "yes or no?",
               "--choices", "yes", "no")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[0])
    assert out["text"] in ("yes", "no") and abs(sum(out["choice_probs"].values()) - 1) < 1e-6
    refused = cli("backend=openai", "model=m", "base_url=https://api.example.com/v1", "--prompt", "note text")
    assert refused.returncode == 2 and "not approved for patient data" in refused.stderr
