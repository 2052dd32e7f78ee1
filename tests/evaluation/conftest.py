"""Evaluation fixtures: the session's real chain (`demo_chain`, tests/chain.py) -- the demo instruction set, the tiny
LoRA that `training.launch` trained on it (recorded in training.runs) and the chain's own evaluation; each test that
writes gets a private copy (`eval_warehouse`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def eval_warehouse_base(demo_chain) -> Path:
    return demo_chain.warehouse


@pytest.fixture
def eval_warehouse(chain_copy) -> Path:
    return chain_copy


@pytest.fixture(scope="session")
def train_run_id(demo_chain) -> str:
    return demo_chain.train_run_id
