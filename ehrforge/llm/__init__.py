"""One LLM client for synthesis and evaluation: OpenAI-compatible endpoints, in-process vLLM and transformers,
behind one function with a warehouse cache (resume), retries, a budget and a PHI guard. See docs/readme/llm.md.

    python -m ehrforge.llm --config configs/llm/local.yaml --prompt "Say hello"

Importing this package is cheap: torch, transformers, vllm and openai are imported by the backend that needs them.
"""

from ehrforge.llm.client import RunStats, run_batch, score_choices
from ehrforge.llm.config import ApprovedEndpoint, Attestation, LLMConfig, Prices
from ehrforge.llm.types import (
    BudgetExceeded,
    EndpointUnreachable,
    LLMError,
    PHIGuardError,
    Request,
    Response,
)

__all__ = [
    "ApprovedEndpoint", "Attestation", "BudgetExceeded", "EndpointUnreachable", "LLMConfig", "LLMError",
    "PHIGuardError", "Prices", "Request", "Response", "RunStats", "run_batch", "score_choices",
]
