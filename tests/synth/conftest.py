"""One synthesized demo warehouse per test session: the demo config with smaller LLM quotas, LLM tasks on the tiny
random model through ehrforge.llm (in-process transformers backend), run twice (the second run must be a no-op)."""

from __future__ import annotations

import shutil

import duckdb
import pytest


def synth_overrides(tmp) -> list[str]:
    return [
        "progress=false",  # deterministic tasks: the demo config's quotas over all 119 LLemr admissions
        "tasks.note_generation.generate_n=2",
        "tasks.note_qa.quota=8", "tasks.note_reasoning_qa.quota=4", "tasks.question_paraphrase.quota=6",
        "tasks.note_qa.note_max_chars=1200", "tasks.note_reasoning_qa.note_max_chars=1200",
        f"generator.llm.model={tmp}/tiny-llama", f"export_dir={tmp}/export",
    ]


@pytest.fixture(scope="session")
def synthesized(demo_warehouse, tmp_path_factory):
    """(warehouse path, first result, second result, config) after two runs of the same config."""
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    tmp = tmp_path_factory.mktemp("synth")
    path = tmp / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", synth_overrides(tmp))
    con = duckdb.connect(str(path))
    try:
        first = synthesize(cfg, con=con)
        second = synthesize(cfg, con=con)
    finally:
        con.close()
    return path, first, second, cfg


@pytest.fixture
def synth_con(synthesized):
    con = duckdb.connect(str(synthesized[0]), read_only=True)
    yield con
    con.close()
