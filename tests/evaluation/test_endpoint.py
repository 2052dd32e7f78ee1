"""An OpenAI-compatible endpoint as the evaluated model: real HTTP to a local server (tests/llm/openai_server.py over
the tiny model), P("yes") from the first token's top_logprobs; and the PHI guard refusing an unapproved endpoint
before anything is sent or written."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from tests.chain import DATASET
from tests.llm.conftest import HERE as LLM_TESTS
from tests.llm.conftest import free_port, wait_ready


def _spec(base_url: str, model: str):
    from evaluation.spec import EvalSpec

    return EvalSpec.model_validate({
        "name": "endpoint", "version": 1,
        "data": {"dataset": DATASET, "tasks": ["risk_prediction", "template_qa"], "subset": {"n_per_task": 4}},
        "models": [{"name": "served-tiny", "kind": "endpoint", "path": model, "base_url": base_url,
                    "llm": {"concurrency": 4, "timeout_s": 60}}],
        "generation": {"max_new_tokens": 8}, "bootstrap": {"n": 50}, "build_results": False,
    })


@pytest.mark.slow
def test_endpoint_model_scores_yes_no_from_logprobs(eval_warehouse, train_run_id, tmp_path):
    from evaluation.runner import evaluate

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        base, adapter = con.execute("select base_model_path, output_path from training.runs where run_id = ?",
                                    [train_run_id]).fetchone()
    # serve the fine-tune merged (it learnt to answer yes/no, so both are among the first token's top logprobs;
    # the random base rarely has them there and its yes/no calls fail, as they would on a real server)
    served = tmp_path / "merged"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload().save_pretrained(
        served)
    AutoTokenizer.from_pretrained(base).save_pretrained(served)
    base = str(served)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(LLM_TESTS / "openai_server.py"), "--model", base, "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/v1/models", log)
        [summary] = evaluate(_spec(f"http://127.0.0.1:{port}/v1", "tiny"), progress=False)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert summary.status == "succeeded" and summary.n_items == 8 and summary.n_llm_calls == 8
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        run = con.execute("select backend, model_kind, base_url from evaluation.eval_runs "
                          "where spec_name = 'endpoint'").fetchone()
        assert run == ("openai", "endpoint", f"http://127.0.0.1:{port}/v1")
        p = con.execute("select p_yes, prediction from evaluation.predictions "
                        "where spec_name = 'endpoint' and answer_type = 'yes_no'").fetchall()
        assert len(p) == 4 and all(v is not None and 0.0 <= v <= 1.0 for v, _ in p)
        assert con.execute("select count(*) from evaluation.task_metrics "
                           "where spec_name = 'endpoint' and metric = 'auroc'").fetchone()[0] == 1


def test_unapproved_endpoint_is_refused_before_anything_is_sent(eval_warehouse):
    from ehrforge.llm import PHIGuardError
    from evaluation.runner import evaluate

    with pytest.raises(PHIGuardError, match="not approved"):
        evaluate(_spec("https://api.example.com/v1", "gpt-x"), progress=False)
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        assert con.execute("select count(*) from evaluation.eval_runs where spec_name = 'endpoint'").fetchone()[0] == 0
        assert con.execute("select count(*) from evaluation.predictions where spec_name = 'endpoint'").fetchone()[0] == 0
        # the refusal is recorded: the run is failed, with the reason, not left `running`
        status, error = con.execute("select status, error from meta.runs where job = 'evaluate' "
                                    "and status <> 'succeeded'").fetchone()
        assert status == "failed" and "PHIGuardError" in error and "not approved" in error


@pytest.mark.slow
def test_failed_calls_leave_the_run_incomplete_and_are_retried(eval_warehouse, train_run_id, tmp_path):
    """The random base model served over HTTP has neither "yes" nor "no" among its first token's top logprobs: those
    calls fail, are recorded with their error, the run is `incomplete` (the results marts skip it), and a re-run
    tries exactly the failed calls again (nothing failed is cached)."""
    from evaluation.runner import evaluate

    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        base = con.execute("select base_model_path from training.runs where run_id = ?", [train_run_id]).fetchone()[0]
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(LLM_TESTS / "openai_server.py"), "--model", base, "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/v1/models", log)
        spec = _spec(f"http://127.0.0.1:{port}/v1", "tiny")
        [first] = evaluate(spec, progress=False)
        [second] = evaluate(spec, progress=False)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first.n_failed > 0 and first.status == "incomplete"
    assert second.n_llm_calls == first.n_failed  # only the failed calls are sent again
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        status, n_failed = con.execute("select status, n_failed from evaluation.eval_runs "
                                       "where spec_name = 'endpoint'").fetchone()
        assert status == "incomplete" and n_failed == second.n_failed
        errors = con.execute("select count(*) from evaluation.predictions where error is not null").fetchone()[0]
        assert errors == n_failed
        # a failed item is not scored as wrong: its metric values are null
        assert con.execute("""select count(*) from evaluation.scores s join evaluation.predictions p
                              using (run_id, instruction_id) where p.error is not null and s.value is not null
                           """).fetchone()[0] == 0
