"""Config validation, request validation and the PHI guard's decisions (no model, no network)."""

from __future__ import annotations

import pytest

from ehrforge.config import load_config
from ehrforge.errors import ConfigError
from ehrforge.llm import LLMConfig, PHIGuardError, Request
from ehrforge.llm.guard import check_phi, endpoint_approval, is_loopback

MSG = [{"role": "user", "content": "hi"}]


def test_openai_needs_base_url():
    with pytest.raises(ValueError, match="needs base_url"):
        LLMConfig(backend="openai", model="m")


def test_attestation_must_state_both_guarantees(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: openai\nmodel: gpt\nbase_url: https://api.example.com/v1\napproved_endpoints:\n"
                   "  - base_url: https://api.example.com/v1\n    attestation: {zero_data_retention: true}\n")
    with pytest.raises(ConfigError, match="no_human_review: true"):
        load_config(cfg, LLMConfig)


def test_cost_cap_needs_prices():
    with pytest.raises(ValueError, match="needs prices"):
        LLMConfig(model="m", max_cost_usd=1.0)


def test_request_validation():
    with pytest.raises(ValueError, match="role"):
        Request(id="a", messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="empty"):
        Request(id="a", messages=[])
    with pytest.raises(ValueError, match="distinct"):
        Request(id="a", messages=MSG, choices=["yes", "yes"])


@pytest.mark.parametrize("url,loop", [
    ("http://127.0.0.1:8000/v1", True), ("http://localhost:8000/v1", True), ("http://[::1]:8000/v1", True),
    ("http://127.9.9.9/v1", True), ("http://192.0.2.2:8000/v1", False), ("https://api.openai.com/v1", False),
    ("http://localhost.evil.com/v1", False), ("http://127.0.0.1.nip.io/v1", False),
])
def test_loopback_detection(url, loop):
    assert is_loopback(url) is loop


def test_guard_decisions():
    ext = "https://my.openai.azure.com/openai/v1"
    assert endpoint_approval(LLMConfig(model="m")) == "in-process"
    assert endpoint_approval(LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1")) == "loopback"
    assert endpoint_approval(LLMConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1",
                                       approve_loopback=False)) is None
    cfg = LLMConfig(backend="openai", model="m", base_url=ext)
    with pytest.raises(PHIGuardError, match="approved_endpoints") as exc:
        check_phi(cfg, [Request(id="note-1", messages=MSG)])
    assert "note-1" in str(exc.value) and "zero_data_retention: true" in str(exc.value)
    check_phi(cfg, [Request(id="synthetic", messages=MSG, contains_phi=False)])  # no warehouse text: allowed
    approved = LLMConfig(backend="openai", model="m", base_url=ext, approved_endpoints=[
        {"base_url": "HTTPS://My.OpenAI.Azure.com:443/openai/v1/",
         "attestation": {"zero_data_retention": True, "no_human_review": True, "agreement": "BAA-2026-01"}}])
    check_phi(approved, [Request(id="note-1", messages=MSG)])
    other = approved.model_copy(update={"base_url": "https://my.openai.azure.com/other/v1"})
    with pytest.raises(PHIGuardError):
        check_phi(other, [Request(id="note-1", messages=MSG)])


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys; from ehrforge.llm import LLMConfig, Request, run_batch, score_choices\n"
            "print([m for m in ('torch', 'transformers', 'openai', 'vllm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_example_configs_validate():
    from pathlib import Path

    from ehrforge.llm.guard import endpoint_approval

    examples = sorted((Path(__file__).parents[2] / "ehrforge" / "llm" / "examples").glob("*.yaml"))
    assert len(examples) == 3
    for path in examples:
        cfg = load_config(path, LLMConfig)
        assert endpoint_approval(cfg) is not None, path


def test_retry_after_parsing_and_backoff():
    import email.utils
    import time
    from types import SimpleNamespace

    from ehrforge.llm.backends.openai_backend import backoff_s, retry_after_s

    def exc(headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(exc({"retry-after": "3"})) == 3.0
    assert retry_after_s(exc({"retry-after-ms": "250", "retry-after": "3"})) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_s(exc({"retry-after": date})) <= 30
    assert retry_after_s(exc({"retry-after": "soon"})) is None and retry_after_s(exc({})) is None
    delays = [backoff_s(a, base=0.5, cap=8.0) for a in range(8)]
    assert all(0.5 * min(8.0, 0.5 * 2**a) <= d <= min(8.0, 0.5 * 2**a) for a, d in enumerate(delays))
    assert max(delays) <= 8.0
