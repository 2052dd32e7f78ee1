"""GRPO (training/recipes/grpo.py): reward functions on hand-written completions, train-only prompts, config rules,
and a few real GRPOTrainer steps on the tiny model with the rewards recorded in the warehouse."""

from __future__ import annotations

import json

import pytest

from ehrforge import warehouse
from ehrforge.errors import ConfigError, InputDataError
from training.config import load_train_config, run_id_for
from training.recipes.grpo import correctness, format_reward, snapshot

CONFIG = "training/configs/demo/tiny_grpo.yaml"


def _chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]  # how TRL hands conversational completions to rewards


def test_correctness_reward_scores_the_final_answer_with_the_shared_verifier():
    completions = [
        _chat("Potassium 6.1 is above 5.1.\nAnswer: yes"),          # right, with reasoning
        _chat("<think>K is 6.1</think>\nno"),                       # wrong after a thinking section
        _chat("Answer: 4.3"),                                       # numeric within tolerance
        _chat("The value was 9.\nAnswer: 12"),                      # the answer line counts, not the 9 before it
        _chat('Answer: ["Glucose", "Sodium"]'),                     # set F1 = 0.5
        "yes",                                                      # plain-text completion, no format
        _chat("I am not sure."),                                    # no answer at all
    ]
    gold = ["yes", "yes", "4.2", "9", '["Glucose", "Potassium"]', "yes", "no"]
    types = ["yes_no", "yes_no", "number", "number", "set", "yes_no", "yes_no"]
    assert correctness(completions, answer=gold, answer_type=types) == [1.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0]


def test_format_reward_wants_reasoning_then_an_answer_line():
    completions = [_chat("Potassium 6.1 is above 5.1.\nAnswer: yes"), _chat("Answer: yes"), _chat("yes"),
                   _chat("")]
    assert format_reward(completions) == [1.0, 0.5, 0.0, 0.0]
    assert format_reward.__name__ == "format"  # logged as rewards/format/mean


def test_grpo_config_rules():
    cfg = load_train_config(CONFIG)
    assert cfg.method == "grpo" and cfg.stages == ["grpo"]
    with pytest.raises(ConfigError, match=r"stages=\[grpo\]"):
        load_train_config(CONFIG, ["stages=[sft]"])
    with pytest.raises(ConfigError, match="stage grpo needs method=grpo"):
        load_train_config(None, ["stages=[grpo]"])
    with pytest.raises(ConfigError, match="export_path is for SFT only"):
        load_train_config(CONFIG, ["data.export_path=x.jsonl"])


def test_prompts_come_from_train_patients_only(train_env, tmp_path):
    cfg = load_train_config(CONFIG)
    with warehouse.session() as con:
        meta, _ = snapshot(con, cfg, tmp_path)
        rows = [json.loads(x) for x in (tmp_path / "grpo_train.jsonl").read_text().splitlines()]
        train_ids = {r[0] for r in con.execute("select subject_id from marts.dim_splits where split = 'train'").fetchall()}
        assert rows and meta["grpo_counts"]["train"] == len(rows)
        assert {r["subject_id"] for r in rows} <= train_ids
        assert {r["answer_type"] for r in rows} <= {"yes_no", "number", "set"}
        # the prompt is exactly the SFT / evaluation chat form without the answer
        from ehrforge.instructions import to_messages

        first = con.execute("select * from synthesis.instructions where instruction_id = ?",
                            [rows[0]["instruction_id"]]).df().to_dict("records")[0]
        assert rows[0]["prompt"] == to_messages(first, cfg.data.system_prompt, with_answer=False)
        # a row labelled train whose patient is not in the train split is refused, naming the table and the fix
        sid = con.execute("select subject_id from marts.dim_splits where split = 'test' limit 1").fetchone()[0]
        con.execute("update synthesis.instructions set subject_id = ? where instruction_id = ?",
                    [sid, rows[0]["instruction_id"]])
        with pytest.raises(InputDataError, match="not in the train split of marts.dim_splits"):
            snapshot(con, cfg, tmp_path)


@pytest.mark.slow  # ~35 s on the shared 2-core CPU (GRPOTrainer start-up + generation)
def test_grpo_steps_run_and_rewards_are_recorded(train_env, tiny_model_dir):
    pytest.importorskip("trl")
    from training.launch import train

    cfg = load_train_config(CONFIG, [f"model.base={tiny_model_dir}", "train.max_steps=2",
                                     "grpo.max_completion_tokens=8", "data.max_train_examples=16"])
    (s,) = train(cfg)
    assert s["stage"] == "grpo" and s["steps"] == 2 and s["n_train_examples"] == 16
    with warehouse.session(read_only=True) as con:
        runs = con.execute("select stage, method, dataset, steps, output_path from training.runs").df()
        curve = con.execute("select step, metric, value from training.reward_curve where run_id = ?",
                            [run_id_for(cfg)]).df()
    assert runs.to_dict("records")[0] | {"output_path": None} == {
        "stage": "grpo", "method": "grpo", "dataset": "demo", "steps": 2, "output_path": None}
    metrics = set(curve["metric"])
    assert {"reward", "rewards/correctness/mean", "rewards/format/mean", "kl", "completions/mean_length"} <= metrics
    assert sorted(curve[curve.metric == "reward"]["step"]) == [1, 2]
    assert curve["value"].notna().all()
    assert ((curve[curve.metric.str.startswith("rewards/")]["value"].between(0, 1))
            | curve[curve.metric.str.startswith("rewards/")]["metric"].str.endswith("/std")).all()
    # the adapter was saved where training.runs says
    import pathlib

    assert (pathlib.Path(s["output_path"]) / "adapter_config.json").is_file()
