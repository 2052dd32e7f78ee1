"""The real path: dbt-built demo warehouse -> `make synthesize` (deterministic tasks) -> `make train` (tiny LoRA).

The other training tests use the small synthetic warehouse of `training.synthetic` (fast, learnable lookups);
this one checks the same code on the real demo instruction set and marts.
"""

import shutil

import pytest

from ehrforge import warehouse


@pytest.fixture(scope="module")
def demo_instructions(demo_warehouse, tmp_path_factory):
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    tmp = tmp_path_factory.mktemp("demo-train")
    path = tmp / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", [
        "progress=false", f"generator.llm.model={tmp}/tiny-llama", f"export_dir={tmp}/export",
        "tasks.note_generation.enabled=false", "tasks.note_qa.enabled=false",
        "tasks.note_reasoning_qa.enabled=false", "tasks.question_paraphrase.enabled=false",
    ])
    with warehouse.session(path) as con:
        synthesize(cfg, con=con)
    return path


def test_demo_config_trains_on_the_real_demo_instruction_set(demo_instructions, tmp_path, monkeypatch):
    from training.config import load_train_config
    from training.launch import train

    db = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_instructions, db)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(db))
    monkeypatch.setenv("EHRFORGE_RUNS", str(tmp_path / "runs"))
    cfg = load_train_config("training/configs/demo/tiny_lora.yaml",
                            ["train.max_steps=4", "train.eval_steps=2", "train.save_steps=2", "train.logging_steps=1"])
    (s,) = train(cfg)
    with warehouse.session(read_only=True) as con:
        counts = dict(con.execute("select split, count(*) from synthesis.instructions where dataset='demo' "
                                  "group by 1").fetchall())
        run = con.execute("select n_train_examples, n_val_examples, n_dropped, steps, final_eval_loss "
                          "from training.runs").fetchall()
    assert len(run) == 1
    n_train, n_val, n_dropped, steps, eval_loss = run[0]
    # every train/val row is used (the synthesis budget keeps rows under the demo's 1024 tokens) or counted
    assert n_train + n_val + n_dropped == counts["train"] + counts["val"]
    assert n_dropped <= 0.05 * (counts["train"] + counts["val"])
    assert steps == 4 and eval_loss is not None and s["first_train_loss"] > 0
