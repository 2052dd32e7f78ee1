import json

import pandas as pd
import pytest

from ehrforge import warehouse
from ehrforge.errors import InputDataError
from training.config import DEFAULT_SYSTEM_PROMPT, DataConfig, CptConfig
from training.data import (
    IGNORE_INDEX,
    PackedCollator,
    PackedDataset,
    ensure_chat_template,
    load_from_export,
    load_from_warehouse,
    load_train_notes,
    pack_examples,
    tokenize_chat,
)

ROW = {"instruction_id": "x1", "context": "Sex: F\nAge: 70", "instruction": "What is the sex?", "answer": "F"}


def test_to_messages_shape():
    from training.data import to_messages

    msgs = to_messages(ROW)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == DEFAULT_SYSTEM_PROMPT
    assert msgs[1]["content"] == "Sex: F\nAge: 70\n\nWhat is the sex?"
    assert msgs[2]["content"] == "F"
    assert to_messages({**ROW, "context": None})[1]["content"] == "What is the sex?"
    assert len(to_messages(ROW, with_answer=False)) == 2
    assert to_messages({**ROW, "system_prompt": "task prompt"})[0]["content"] == "task prompt"
    with pytest.raises(InputDataError):
        to_messages({**ROW, "answer": " "})


def _answer_tokens(tok, ex):
    return [t for t in ex["labels"] if t != IGNORE_INDEX]


@pytest.mark.parametrize("answer", ["F", "yes", "EMERGENCY admission with potassium 6.1 mmol/L"])
def test_loss_mask_is_exactly_the_answer(tiny_model_dir, answer):
    from transformers import AutoTokenizer
    from training.data import to_messages

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_chat_template(tok, None)
    msgs = to_messages({**ROW, "answer": answer})
    ex = tokenize_chat(tok, msgs)
    ids, labels = ex["input_ids"], ex["labels"]
    # labels are the input ids where unmasked, and the unmasked span is one contiguous run at the end
    on = [i for i, t in enumerate(labels) if t != IGNORE_INDEX]
    assert on == list(range(on[0], on[-1] + 1))
    assert all(labels[i] == ids[i] for i in on)
    expected = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert _answer_tokens(tok, ex) == expected
    # everything before is the prompt exactly as rendered for generation
    prompt = tok.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True, return_dict=True)
    assert ids[: on[0]] == list(prompt["input_ids"])


def test_loss_mask_prefix_rule_for_templates_without_generation_tags(tiny_model_dir):
    """Hub templates rarely mark {% generation %}: the prefix rule must give the same mask."""
    from transformers import AutoTokenizer
    from ehrforge.instructions import CHAT_TEMPLATES
    from training.data import to_messages

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with_tags = tokenize_chat(tok, to_messages(ROW))
    tok.chat_template = CHAT_TEMPLATES["chatml"].replace("{% generation %}", "").replace("{% endgeneration %}", "")
    without = tokenize_chat(tok, to_messages(ROW))
    assert with_tags == without


def test_too_long_is_dropped_not_cut(tiny_model_dir):
    from transformers import AutoTokenizer
    from training.data import to_messages

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenize_chat(tok, to_messages(ROW), max_len=5) is None


def test_warehouse_splits_follow_patients(train_env):
    with warehouse.session() as con:
        data = load_from_warehouse(con, DataConfig(dataset="demo"))
        split_of = dict(con.execute("select subject_id, split from marts.dim_splits").fetchall())
    assert set(data.splits) == {"train", "val"}
    assert data.counts()["train"] > data.counts()["val"] > 0
    for split, rows in data.splits.items():
        assert all(split_of[r["subject_id"]] == split for r in rows)
    train_patients = {r["subject_id"] for r in data.splits["train"]}
    assert not train_patients & {r["subject_id"] for r in data.splits["val"]}
    # the version is stable and changes with the data
    with warehouse.session() as con:
        assert load_from_warehouse(con, DataConfig(dataset="demo")).data_version == data.data_version
        only = load_from_warehouse(con, DataConfig(dataset="demo", tasks=["sex"]))
    assert {r["task"] for r in only.splits["train"]} == {"sex"} and only.data_version != data.data_version


def test_warehouse_split_mismatch_fails(train_env):
    with warehouse.session() as con:
        sid = con.execute("select subject_id from marts.dim_splits where split='val' limit 1").fetchone()[0]
        con.execute("update synthesis.instructions set split='train' where subject_id=?", [sid])
        with pytest.raises(InputDataError, match="split"):
            load_from_warehouse(con, DataConfig(dataset="demo"))


def test_patient_without_split_fails(train_env):
    with warehouse.session() as con:
        sid = con.execute("select subject_id from synthesis.instructions where split='train' limit 1").fetchone()[0]
        con.execute("delete from marts.dim_splits where subject_id=?", [sid])
        with pytest.raises(InputDataError, match="missing from marts.dim_splits"):
            load_from_warehouse(con, DataConfig(dataset="demo"))


def test_unknown_dataset_lists_available(train_env):
    with warehouse.session() as con, pytest.raises(InputDataError, match="available"):
        load_from_warehouse(con, DataConfig(dataset="nope"))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_path(train_env, fmt):
    from training.data import to_messages

    with warehouse.session() as con:
        df = con.execute("select * from synthesis.instructions").df()
    df["messages"] = [json.dumps(to_messages(r)) for r in df.to_dict("records")]
    path = train_env / f"export.{fmt}"
    out = df[["instruction_id", "dataset", "task", "split", "subject_id", "messages"]]
    out.to_parquet(path) if fmt == "parquet" else out.to_json(path, orient="records", lines=True)
    data = load_from_export(path, DataConfig(dataset="demo"))
    with warehouse.session() as con:
        ref = load_from_warehouse(con, DataConfig(dataset="demo"))
    assert data.counts() == ref.counts()
    assert data.splits["train"][0]["messages"] == ref.splits["train"][0]["messages"]


def test_cpt_notes_only_train_patients(train_env):
    with warehouse.session() as con:
        notes = load_train_notes(con, CptConfig())
        train = {r[0] for r in con.execute("select subject_id from marts.dim_splits where split='train'").fetchall()}
        n_all = con.execute("select count(*) from marts.fct_notes").fetchone()[0]
    assert notes and all(n["subject_id"] in train for n in notes)
    assert len(notes) < n_all


def test_pack_examples_capacity_and_determinism():
    lengths = [5, 90, 33, 64, 64, 12, 100, 1, 50, 77] * 7
    packs = pack_examples(lengths, 128, seed=3)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 128 for p in packs)
    assert packs == pack_examples(lengths, 128, seed=3)
    # FFD is near the bound: at most one pack more than perfect
    assert len(packs) <= -(-sum(lengths) // 128) + 2
    with pytest.raises(ValueError):
        pack_examples([200], 128)


def test_packed_collator_positions_and_labels():
    exs = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}]
    b = PackedCollator(pad_token_id=0)(exs)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # no document's first token is a target (it would be predicted from the previous document)
    assert b["labels"].tolist() == [[-100, 2, 3, -100, 5]]
    assert int(b["n_real_tokens"]) == 5
    two = PackedCollator(pad_token_id=0)([exs, exs[:1]])
    assert two["input_ids"].shape == (2, 5) and two["labels"][1].tolist()[3:] == [-100, -100]
    ds = PackedDataset(exs * 4, capacity=5)
    assert len(ds) == 4 and ds.n_tokens() == 20


def test_task_weights_repeat_train_rows_deterministically_and_leave_val_alone():
    from training.data import reweight_tasks

    rows = [{"instruction_id": f"{t}-{i}", "task": t, "split": "train"} for t in ("a", "b", "c") for i in range(400)]
    out = reweight_tasks(rows, {"a": 3, "b": 0.5, "c": 0})
    n = {t: sum(r["task"] == t for r in out) for t in "abc"}
    assert n["a"] == 1200 and n["c"] == 0
    assert 160 < n["b"] < 240                                   # a seeded half
    assert out == reweight_tasks(rows, {"a": 3, "b": 0.5, "c": 0})  # the same rows every run
    assert {r["instruction_id"] for r in out if r["task"] == "b"} != {f"b-{i}" for i in range(200)}  # hashed, not a prefix
    with pytest.raises(InputDataError, match=r"task\(s\) \['nope'\].*its tasks: \['a', 'b', 'c'\]"):
        reweight_tasks(rows, {"nope": 2})
    with pytest.raises(InputDataError, match="leave no train rows"):
        reweight_tasks(rows, {"a": 0, "b": 0, "c": 0})
    with pytest.raises(ValueError, match="task_weights must be >= 0"):
        DataConfig(dataset="demo", task_weights={"a": -1})


def test_task_weights_apply_to_train_only(tmp_path):
    path = tmp_path / "set.jsonl"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with path.open("w") as f:
        for i, (task, split) in enumerate([("risk", "train"), ("qa", "train"), ("risk", "val"), ("qa", "val")]):
            f.write(json.dumps({"instruction_id": f"r{i}", "task": task, "split": split, "subject_id": i,
                                "messages": msgs}) + "\n")
    data = load_from_export(path, DataConfig(dataset="demo", task_weights={"risk": 4}))
    assert [r["task"] for r in data.splits["train"]].count("risk") == 4
    assert [r["task"] for r in data.splits["val"]] == ["risk", "qa"]
