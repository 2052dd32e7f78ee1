"""Bad inputs stop the run before any model loads, with the cause and the fix in the message."""

from __future__ import annotations

import pytest

from ehrforge import warehouse
from ehrforge.errors import EhrforgeError
from evaluation.data import load_items
from evaluation.models import resolve_model
from evaluation.spec import DataSpec, GenerationSpec, ModelSpec
from tests.evaluation.instructions_fixture import DATASET


def test_item_of_a_train_patient_in_the_test_split_is_refused(eval_warehouse):
    with warehouse.session(eval_warehouse) as con:
        items, version = load_items(con, DataSpec(dataset=DATASET, subset={"n": 5, "seed": 1}))
        assert len(items) == 5 and len(version) == 16
        again, _ = load_items(con, DataSpec(dataset=DATASET, subset={"n": 5, "seed": 1}))
        assert list(again["instruction_id"]) == list(items["instruction_id"])  # the seeded subset is stable
        con.execute("""update synthesis.instructions set split = 'test' where instruction_id = (
                         select min(instruction_id) from synthesis.instructions where split = 'train')""")
        with pytest.raises(EhrforgeError, match="disagree with their patient's split"):
            load_items(con, DataSpec(dataset=DATASET))
        with pytest.raises(EhrforgeError, match="available"):
            load_items(con, DataSpec(dataset="no-such-set"))


def test_unknown_training_run_and_missing_adapter_are_named(eval_warehouse):
    with warehouse.session(eval_warehouse) as con:
        with pytest.raises(EhrforgeError, match="no training run matches"):
            resolve_model(con, ModelSpec(name="x", kind="adapter", training_run_id="train-nope"), GenerationSpec())
        with pytest.raises(EhrforgeError, match="does not exist"):
            resolve_model(con, ModelSpec(name="x", kind="adapter", path="tiny://", adapter_path="/nope/adapter"),
                          GenerationSpec())
