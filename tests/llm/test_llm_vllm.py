"""In-process vLLM backend (needs vllm and CUDA): `make test-gpu` or `pytest -m vllm tests/llm/test_llm_vllm.py`."""

from __future__ import annotations

import pytest

from ehrforge.llm import LLMConfig, Request, RunStats, run_batch, score_choices

pytestmark = [pytest.mark.vllm, pytest.mark.gpu]


def test_vllm_generates_scores_and_caches(tiny_model, db_path):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vllm needs a CUDA GPU")
    cfg = LLMConfig(backend="vllm", model=str(tiny_model), max_new_tokens=8, gpu_memory_utilization=0.3,
                    max_model_len=512)
    reqs = [Request(id=f"v{i}", messages=[{"role": "user", "content": f"patient {i}"}]) for i in range(4)]
    stats = RunStats()
    out = run_batch(reqs, cfg, progress=False, stats=stats)
    assert stats.n_calls == 4 and all(r.ok and r.completion_tokens > 0 for r in out)
    again = RunStats()
    run_batch(reqs, cfg, progress=False, stats=again)
    assert again.n_calls == 0
    scored = score_choices(reqs, ["yes", "no"], cfg, progress=False)
    assert all(abs(sum(r.choice_probs.values()) - 1) < 1e-6 for r in scored)
