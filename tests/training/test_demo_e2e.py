"""The real path: the session chain's training step (tests/chain.py: dbt-built demo warehouse -> `make synthesize`
with the demo config -> `make train` with training/configs/demo/tiny_lora.yaml through training.launch).

The other training tests use the small crafted warehouse of `training.synthetic` (see tests/training/conftest.py
for why); this one checks the same code on the real demo instruction set and marts.
"""

from ehrforge import warehouse


def test_demo_config_trains_on_the_real_demo_instruction_set(demo_chain):
    s = demo_chain.train_summary
    with warehouse.session(demo_chain.warehouse, read_only=True) as con:
        counts = dict(con.execute("select split, count(*) from synthesis.instructions where dataset='demo' "
                                  "group by 1").fetchall())
        run = con.execute("select n_train_examples, n_val_examples, n_dropped, steps, final_eval_loss, base_model "
                          "from training.runs where run_id = ?", [demo_chain.train_run_id]).fetchall()
        curve = con.execute("select count(*) from training.loss_curve where run_id = ? and split = 'val'",
                            [demo_chain.train_run_id]).fetchone()[0]
    assert len(run) == 1
    n_train, n_val, n_dropped, steps, eval_loss, base = run[0]
    # every train/val row is used (the synthesis budget keeps rows under the demo's 1024 tokens) or counted
    assert n_train + n_val + n_dropped == counts["train"] + counts["val"]
    assert n_dropped <= 0.05 * (counts["train"] + counts["val"])
    assert steps == s["steps"] == 30 and eval_loss is not None and curve >= 2 and base == "tiny://"
    assert s["final_train_loss"] < s["first_train_loss"]
