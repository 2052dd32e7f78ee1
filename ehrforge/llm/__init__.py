"""One LLM client for synthesis and evaluation: OpenAI-compatible endpoints, in-process vLLM and transformers,
behind one function with a warehouse cache (resume), retries, a budget and a PHI guard. See the README, section "The LLM client".

    python -m ehrforge.llm --config configs/llm/local.yaml --prompt "Say hello"

Importing this package is cheap: torch, transformers, vllm and openai are imported by the backend that needs them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_batch": "client", "score_choices": "client", "RunStats": "client",
    "LLMConfig": "config", "ApprovedEndpoint": "config", "Attestation": "config", "Prices": "config",
    "Request": "types", "Response": "types", "BudgetExceeded": "types", "EndpointUnreachable": "types",
    "LLMError": "types", "PHIGuardError": "types", "prompt_hash": "cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # lazy (PEP 562): `ehrforge.llm.backends.transformers_backend` can be imported where pydantic/duckdb are absent
    # (the GPU bench machine), and `import ehrforge.llm` stays cheap
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ehrforge.llm.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ehrforge.llm' has no attribute {name!r}")


def __dir__():
    return __all__
