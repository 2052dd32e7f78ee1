"""PHI guard: decide, before any byte leaves the process, whether a batch may go to the configured endpoint.

In-process backends (transformers, vllm) and loopback endpoints (`localhost`, 127.0.0.0/8, ::1) are approved by
default. Any other endpoint gets requests that contain warehouse text (`Request.contains_phi`, true by default)
only if it is listed in `approved_endpoints` with an attestation of zero data retention and no human review.
Host names are not resolved: a name that happens to resolve to 127.0.0.1 is still treated as external, so a DNS
change can never open the gate.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable
from urllib.parse import urlsplit

from ehrforge.llm.config import LLMConfig, normalize_url
from ehrforge.llm.types import PHIGuardError, Request


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_approval(config: LLMConfig) -> str | None:
    """Why the endpoint may receive PHI ("in-process", "loopback", "approved: ..."), or None if it may not."""
    if config.backend != "openai":
        return "in-process"
    if config.approve_loopback and is_loopback(config.base_url):
        return "loopback"
    target = normalize_url(config.base_url)
    for entry in config.approved_endpoints:
        if normalize_url(entry.base_url) == target:
            return f"approved with attestation {entry.attestation.model_dump()}"
    return None


def check_phi(config: LLMConfig, requests: Iterable[Request]) -> None:
    """Raise PHIGuardError if any request carrying warehouse text would go to an unapproved endpoint."""
    if endpoint_approval(config) is not None:
        return
    phi_ids = [r.id for r in requests if r.contains_phi]
    if not phi_ids:
        return
    shown = ", ".join(phi_ids[:5]) + (f" and {len(phi_ids) - 5} more" if len(phi_ids) > 5 else "")
    raise PHIGuardError(
        f"refusing to send {len(phi_ids)} request(s) containing warehouse text ({shown}) to {config.base_url}: "
        "this endpoint is not approved for patient data, and nothing was sent. To approve it, add to the LLM "
        "config:\n"
        "  approved_endpoints:\n"
        f"    - base_url: {config.base_url}\n"
        "      attestation: {zero_data_retention: true, no_human_review: true}\n"
        "only if your data-use agreement with the provider guarantees both (PhysioNet: prefer local models). "
        "Alternatively serve the model locally (vLLM on 127.0.0.1) or use backend transformers/vllm. Requests "
        "built only from synthetic or public text can set contains_phi=False."
    )
