"""Bad inputs stop the run before any model loads, with the cause and the fix in the message."""

from __future__ import annotations

import pytest

from ehrforge import warehouse
from ehrforge.errors import EhrforgeError
from evaluation.data import load_items
from evaluation.models import resolve_model
from evaluation.spec import DataSpec, GenerationSpec, ModelSpec
from tests.chain import DATASET


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


def test_training_run_resolves_per_kind(eval_warehouse, tmp_path):
    """kind base / adapter / merged of one training run, and the two mismatches, with the fix named."""
    from evaluation.models import training_run

    dirs = {k: tmp_path / k for k in ("base", "adapter", "merged", "full")}
    for d in dirs.values():
        d.mkdir()
    (dirs["adapter"] / "adapter_config.json").write_text("{}")  # what a LoRA run saves: an adapter is told by its files
    b, a, m, f = (str(d) for d in dirs.values())
    gen = GenerationSpec()
    with warehouse.session(eval_warehouse) as con:
        record_training_run(con, "train-merged", "merged-run", b, a, merged_path=m)
        record_training_run(con, "train-unmerged", "unmerged-run", b, a)
        record_training_run(con, "train-full", "full-run", b, f, method="full")
        spec = lambda kind, run: ModelSpec(name="x", kind=kind, training_run_id=run)  # noqa: E731
        r = resolve_model(con, spec("merged", "train-merged"), gen)
        assert (r.model_path, r.adapter_path, r.base_model_path, r.training_run_id) == (m, None, b, "train-merged")
        r = resolve_model(con, spec("adapter", "train-merged"), gen)
        assert (r.model_path, r.adapter_path) == (b, a) and r.llm_config.adapter == a
        assert resolve_model(con, spec("base", "train-merged"), gen).model_path == b
        assert resolve_model(con, spec("merged", "train-full"), gen).model_path == f  # a full fine-tune is the model
        with pytest.raises(EhrforgeError, match="no merged model .*output.merge: true"):
            resolve_model(con, spec("merged", "train-unmerged"), gen)
        with pytest.raises(EhrforgeError, match="full fine-tune, not an adapter; use kind: merged"):
            resolve_model(con, spec("adapter", "train-full"), gen)
        # `latest` narrowed by the config name picks that run
        assert training_run(con, "latest", "merged-run")["run_id"] == "train-merged"


def record_training_run(con, run_id: str, name: str, base_path: str, output_path: str, method: str = "lora",
                        merged_path: str | None = None) -> None:
    """A crafted training.runs row: the kinds of run this test needs (merged, unmerged, full) are more than the
    session chain trains, and only the columns evaluation reads matter here (the rest stay null, as declared)."""
    import json

    from ehrforge import tables, warehouse

    run = warehouse.start_run(con, job="train", config={"name": name, "crafted": True}, run_id=run_id)
    warehouse.write_table(con, "training.runs", tables.frame("training.runs", [{
        "stage": "sft", "method": method, "base_model": "tiny://", "base_model_path": base_path,
        "output_path": output_path, "merged_path": merged_path, "config_json": json.dumps({"name": name})}]), run)
    warehouse.finish_run(con, run)
