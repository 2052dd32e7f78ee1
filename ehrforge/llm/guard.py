"""PHI guard: decide, before any byte leaves the process, whether a batch may go to the configured endpoint.

In-process backends (transformers, vllm) and loopback endpoints (`localhost`, 127.0.0.0/8, ::1) are approved by
default. Any other endpoint gets requests that contain warehouse text (`Request.contains_phi`, true by default)
only if it is listed in `approved_endpoints` with an attestation of zero data retention and no human review.
Host names are not resolved: a name that happens to resolve to 127.0.0.1 is still treated as external, so a DNS
change can never open the gate.

Provenance decides the rest. A request names the warehouse tables its text was built from (`Request.sources`);
ehrforge.provenance derives from the dbt declarations whether all of them are public (PMC-Patients case reports,
notes generated from them) or MIMIC-derived. An endpoint listed in `public_data_endpoints` receives a batch only if
every request in it is public by that derivation: `contains_phi=False` does not count there, and a request without
sources counts as MIMIC-derived. A request whose sources include a MIMIC-derived table is PHI for every endpoint,
whatever its `contains_phi` flag says.
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


def is_public_data_endpoint(config: LLMConfig) -> bool:
    if config.backend != "openai" or not config.base_url:
        return False
    target = normalize_url(config.base_url)
    return any(normalize_url(u) == target for u in config.public_data_endpoints)


def check_phi(config: LLMConfig, requests: Iterable[Request]) -> None:
    """Raise PHIGuardError if any request carrying warehouse text would go to an unapproved endpoint."""
    from ehrforge import provenance

    if endpoint_approval(config) is not None:
        return
    requests = list(requests)
    if is_public_data_endpoint(config):
        refused = [(r.id, provenance.mimic_tables(r.sources) if r.sources else None) for r in requests
                   if provenance.of_tables(r.sources) != provenance.PUBLIC]
        if not refused:
            return
        shown = "; ".join(f"{rid} (built from {', '.join(t)})" if t else f"{rid} (names no source table)"
                          for rid, t in refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise PHIGuardError(
            f"refusing to send {len(refused)} request(s) to {config.base_url}: it is listed in public_data_endpoints, "
            f"which receive only requests built from public text, and these are MIMIC-derived or name no source "
            f"table: {shown}. Nothing was sent. Public tables are declared in the dbt source YAML "
            "(`meta: {provenance: public}`, e.g. dbt_project/models/staging/pmc_patients/_pmc_patients__sources.yml) "
            "and everything built only from them; send MIMIC-derived text only to an in-process backend, a loopback "
            "server, or an endpoint in approved_endpoints with a PHI attestation.")
    phi_ids = [r.id for r in requests if r.contains_phi or (r.sources and provenance.of_tables(r.sources) != provenance.PUBLIC)]
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
        "built only from public text can name their source tables (Request.sources) and go to an endpoint listed in "
        "public_data_endpoints."
    )
