"""Provenance decides the endpoint (docs/asclepius.md): requests name the warehouse tables their text came from,
ehrforge.provenance derives public / mimic from the dbt declarations, and the PHI guard lets only public requests go
to an endpoint listed in `public_data_endpoints`. Both ways against the recording loopback server, configured as if
it were external (`approve_loopback: false`): public requests arrive, MIMIC-derived ones are refused before any byte
(not even the /models probe) leaves."""

from __future__ import annotations

import pytest

from ehrforge import provenance
from ehrforge.llm import LLMConfig, PHIGuardError, Request, run_batch
from ehrforge.llm.guard import check_phi

MSG = [{"role": "user", "content": "Rewrite this case report as a discharge summary."}]


def req(i, sources, **kw):
    return Request(id=f"r{i}", messages=[{"role": "user", "content": f"text {i}"}], sources=sources, **kw)


def test_provenance_is_derived_from_the_dbt_declarations():
    # declared public sources, and models built only from them
    assert provenance.table_provenance("raw_pmc.patients") == "public"
    assert provenance.table_provenance("staging.stg_pmc_patients__case_reports") == "public"
    assert provenance.table_provenance("marts.dim_case_reports") == "public"
    assert provenance.table_provenance("synthesis.synthetic_notes") == "public"
    # MIMIC sources, models over them (also through a macro that hides its source), unknown tables: fail closed
    for t in ("raw_note.discharge", "staging.stg_mimic_note__discharge", "marts.fct_notes", "marts.dim_splits",
              "marts.fct_events", "synthesis.instructions", "no_such.table"):
        assert provenance.table_provenance(t) == "mimic", t
    assert provenance.of_tables(["marts.dim_case_reports", "synthesis.synthetic_notes"]) == "public"
    assert provenance.of_tables(["marts.dim_case_reports", "marts.fct_notes"]) == "mimic"
    assert provenance.of_tables([]) == "mimic"


def test_guard_rule_without_a_server():
    ext = "https://llm.example.org/v1"
    public_only = LLMConfig(backend="openai", model="m", base_url=ext, public_data_endpoints=[ext + "/"])
    check_phi(public_only, [req(0, ["marts.dim_case_reports"]), req(1, ["synthesis.synthetic_notes"])])
    # the caller's flag does not count at a public-data endpoint: no sources = MIMIC-derived
    with pytest.raises(PHIGuardError, match="names no source table"):
        check_phi(public_only, [req(2, [], contains_phi=False)])
    with pytest.raises(PHIGuardError, match=r"r3 \(built from marts.fct_notes\)"):
        check_phi(public_only, [req(0, ["marts.dim_case_reports"]),
                                req(3, ["marts.dim_case_reports", "marts.fct_notes"], contains_phi=False)])
    # an endpoint not named in public_data_endpoints gets no public requests either unless the flag says so
    # (hand-typed prompts), and never a request whose sources are MIMIC-derived, whatever the flag
    other = LLMConfig(backend="openai", model="m", base_url=ext)
    with pytest.raises(PHIGuardError, match="approved_endpoints"):
        check_phi(other, [req(4, ["marts.fct_notes"], contains_phi=False)])
    with pytest.raises(ValueError, match="public_data_endpoints entry"):
        LLMConfig(backend="openai", model="m", base_url=ext, public_data_endpoints=["not a url"])


def test_public_requests_reach_a_public_data_endpoint_mimic_ones_never(server, tiny_model, db_path):
    base = {"backend": "openai", "base_url": server.base_url, "model": str(tiny_model), "max_new_tokens": 4,
            "approve_loopback": False, "timeout_s": 30}
    cfg = LLMConfig(**base, public_data_endpoints=[server.base_url])
    # MIMIC-derived: refused, nothing sent (not even the probe), the message names the request and its table
    with pytest.raises(PHIGuardError, match=r"built from marts.fct_notes") as exc:
        run_batch([req(0, ["marts.dim_case_reports"]), req(1, ["marts.fct_notes"], contains_phi=False)], cfg,
                  progress=False)
    assert "Nothing was sent" in str(exc.value) and "r1" in str(exc.value)
    assert server.received(path=None) == []
    # public: sent and answered
    out = run_batch([req(2, ["marts.dim_case_reports"]), req(3, ["synthesis.synthetic_notes"])], cfg, progress=False)
    assert all(r.ok for r in out)
    assert len(server.received()) == 2
    # the same public requests to the same server when the config does not name it: refused (PHI by default)
    with pytest.raises(PHIGuardError, match="approved_endpoints"):
        run_batch([req(5, ["marts.dim_case_reports"])], LLMConfig(**base), progress=False)
    assert len(server.received()) == 2
