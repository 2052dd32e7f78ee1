"""Fixtures for the GPU tests: the device they run on and random-init Llama models built on it.

    pytest -m gpu tests/gpu                                 # on a CUDA machine (`bash bench/gpu.sh all` runs this)
    EHRFORGE_GPU_TESTS_ON_CPU=1 pytest -m gpu tests/gpu     # the same checks on CPU, to test their logic here

Without CUDA and without EHRFORGE_GPU_TESTS_ON_CPU=1 every test is skipped, saying so. On the GPU machine
`bench/gpu.sh` sets EHRFORGE_GPU_TESTS_REQUIRE_CUDA=1: there a missing CUDA fails the tests instead of skipping
them, so a broken driver cannot pass as "all skipped". The tests need torch, transformers, peft and pydantic,
not duckdb: they make their data in memory. With EHRFORGE_GPU_TESTS_REPORT=<file>, each test's outcome is appended
to that JSONL file as soon as it is known, so a run cut for time still tells which tests passed.
"""

from __future__ import annotations

import json
import os

import pytest

ON_CPU_ENV = "EHRFORGE_GPU_TESTS_ON_CPU"
REQUIRE_CUDA_ENV = "EHRFORGE_GPU_TESTS_REQUIRE_CUDA"
REPORT_ENV = "EHRFORGE_GPU_TESTS_REPORT"


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    message = ""
    if report.outcome != "passed":
        longrepr = report.longrepr
        crash = getattr(longrepr, "reprcrash", None)
        message = longrepr[2] if isinstance(longrepr, tuple) else (crash.message if crash else str(longrepr))
    with open(path, "a") as f:
        f.write(json.dumps({"name": report.nodeid.split("::")[-1], "module": report.nodeid.split("::")[0],
                            "outcome": {"passed": "passed", "skipped": "skipped"}.get(report.outcome, "failed"),
                            "when": report.when, "seconds": round(report.duration, 2),
                            "message": message[:300]}) + "\n")


@pytest.fixture(scope="session")
def device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get(REQUIRE_CUDA_ENV) == "1":
        pytest.fail(f"{REQUIRE_CUDA_ENV}=1 but torch.cuda.is_available() is False (torch {torch.__version__}): "
                    "check the driver with nvidia-smi")
    if os.environ.get(ON_CPU_ENV) == "1":
        return "cpu"
    pytest.skip(f"needs a CUDA GPU (torch.cuda.is_available() is False); set {ON_CPU_ENV}=1 to run these checks "
                "on CPU")


@pytest.fixture(scope="session")
def random_llama(device):
    """Factory: a random-init Llama on the test device, in eval mode.

    initializer_range 0.1 (not 0.02) makes the output depend visibly on the context, so that a test comparing two
    attention paths would see a document attending to another (checked by the tests themselves)."""

    def build(dtype, vocab_size: int = 1024, hidden_size: int = 128, layers: int = 2, attn: str = "sdpa", **extra):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=2048, initializer_range=0.1, attn_implementation=attn, **extra)
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
        return model.to(dtype).eval()

    return build
