"""The synthesis tests read the synthesis step of the session's real chain (`demo_chain`, tests/chain.py): the demo
config with smaller LLM quotas, LLM tasks on the tiny random model through ehrforge.llm (in-process transformers
backend), run twice (the second run must be a no-op)."""

from __future__ import annotations

import duckdb
import pytest


@pytest.fixture(scope="session")
def synthesized(demo_chain):
    """(warehouse path, first result, second result, config) after two runs of the same config."""
    return demo_chain.warehouse, demo_chain.synth_first, demo_chain.synth_second, demo_chain.synth_config


@pytest.fixture
def synth_con(synthesized):
    con = duckdb.connect(str(synthesized[0]), read_only=True)
    yield con
    con.close()
