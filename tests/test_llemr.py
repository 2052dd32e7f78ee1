"""LLemr (docs/llemr.md): event descriptions embedded once in the warehouse, per-event features scaled with train
patients only, an event form of the same instruction rows, a projector + LoRA model saved as one artifact, and its
evaluation beside the text model on the same items. All on the real demo; the tiny model (the 135M one only in
`slow` tests of other modules)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from ehrforge import llemr, warehouse
from ehrforge.event_embeddings import TABLE, embed_events

SMALL_TYPES = ["omr", "admission", "discharge", "death"]          # 15 descriptions: seconds to embed
TRAIN_TYPES = ["microbiology", "transfer", "discharge", "omr"]   # ~110 descriptions


def _features_digest(con) -> tuple:
    return con.execute("select count(*), sum(hash(event_id, description_id, hours_since_admit, value_norm, split)) "
                       "from marts.fct_event_features").fetchone()


def test_description_ids_are_the_md5_of_their_text(demo_warehouse):
    with warehouse.session(demo_warehouse, read_only=True) as con:
        rows = con.execute("select description_id, description from marts.dim_event_descriptions").fetchall()
        n_events = warehouse.fetch_scalar(con, "select count(*) from marts.fct_event_features f "
                                          "left join marts.dim_event_descriptions d using (description_id) "
                                          "where d.description_id is null")
    assert len(rows) > 1000
    assert all(i == hashlib.md5(d.encode()).hexdigest() for i, d in rows)
    assert n_events == 0  # every event's description is in the description mart


def test_values_are_scaled_with_train_patients_only(demo_warehouse):
    """value_norm = (value - mean) / std over TRAIN patients' plausible values of the description, clipped to +-5;
    moving a test patient's values would not move anyone's scaling."""
    with warehouse.session(demo_warehouse, read_only=True) as con:
        desc = con.execute("select description_id from marts.fct_event_features where event_type = 'lab' and "
                           "value_num is not null group by 1 order by count(*) desc limit 1").fetchone()[0]
        df = con.execute("select f.value_num, f.value_norm, f.split from marts.fct_event_features f "
                         "where f.description_id = ? and f.value_num is not null", [desc]).df()
    train = df.loc[df["split"] == "train", "value_num"].to_numpy(float)
    mean, std = train.mean(), train.std()
    expected = np.clip((df["value_num"].to_numpy(float) - mean) / std, -5, 5)
    np.testing.assert_allclose(df["value_norm"].to_numpy(float), expected, rtol=1e-6, atol=1e-9)
    assert set(df["split"]) >= {"train", "test"}
    # with all patients' values the scaling would differ: the test above can tell the two apart
    assert abs(df["value_num"].mean() - mean) > 1e-6


def test_the_features_query_is_deterministic(demo_warehouse, dbt_env):
    """The mart's compiled SQL, run twice, gives the same rows, ids and values, bit for bit (no order-dependent float
    sums: parallel threads may add doubles in any order)."""
    import os
    from pathlib import Path

    sql = next(Path(os.environ["DBT_TARGET_PATH"]).glob("compiled/**/marts/events/fct_event_features.sql")).read_text()
    with warehouse.session(demo_warehouse, read_only=True) as con:
        digests = {con.execute(f"select count(*), sum(hash(event_id, description_id, hours_since_admit, value_norm, "
                               f"split)) from ({sql}) t").fetchone() for _ in range(3)}
        assert digests == {_features_digest(con)}


@pytest.mark.slow
def test_the_features_table_is_deterministic(warehouse_copy, dbt_env):
    """Rebuilding the LLemr marts over the same input gives the same rows, ids and values."""
    from ehrforge.build import run_dbt

    with warehouse.session(warehouse_copy, read_only=True) as con:
        before = _features_digest(con)
        descriptions = con.execute("select sum(hash(description_id, description)) from "
                                   "marts.dim_event_descriptions").fetchone()
    assert run_dbt(["run", "--select", "dim_event_descriptions", "fct_event_features", "--quiet"])
    with warehouse.session(warehouse_copy, read_only=True) as con:
        assert _features_digest(con) == before
        assert con.execute("select sum(hash(description_id, description)) from "
                           "marts.dim_event_descriptions").fetchone() == descriptions


def test_a_rerun_embeds_only_descriptions_it_has_not_seen(warehouse_copy):
    with warehouse.session(warehouse_copy) as con:
        first = embed_events(con, event_types=SMALL_TYPES, progress=False)
        n_types = warehouse.fetch_scalar(con, "select count(*) from marts.dim_event_descriptions where event_type in "
                                         "(select unnest(?::varchar[]))", [SMALL_TYPES])
        assert first["n_new"] == n_types >= 10 and first["dim"] == 384
        vectors = dict(con.execute(f"select description_id, embedding from {TABLE}").fetchall())
        assert embed_events(con, event_types=SMALL_TYPES, progress=False)["n_new"] == 0
        # three descriptions the table has not seen (as after a rebuild that adds items): only they are embedded
        gone = [r[0] for r in con.execute(f"select description_id from {TABLE} order by description_id limit 3")
                .fetchall()]
        con.execute(f"delete from {TABLE} where description_id in (select unnest(?::varchar[]))", [gone])
        again = embed_events(con, event_types=SMALL_TYPES, progress=False)
        assert again["n_new"] == 3
        rows = con.execute(f"select description_id, embedding, encoder, dim from {TABLE}").fetchall()
    assert len(rows) == len(vectors)
    assert {r[2] for r in rows} == {"minilm-l6-v2"} and {r[3] for r in rows} == {384}
    for d in gone:  # the same encoder gives the same vector again
        np.testing.assert_allclose(dict((r[0], r[1]) for r in rows)[d], vectors[d], atol=1e-5)


def test_the_event_form_is_the_same_items_with_events_for_context(chain_copy):
    from training.recipes.llemr import EVENT_TASKS

    spec = llemr.LlemrSpec(event_types=TRAIN_TYPES + ["diagnosis"], max_events=40)
    with warehouse.session(chain_copy, read_only=True) as con:
        rows = con.execute("select instruction_id, task, context, instruction, answer, lineage from "
                           "synthesis.instructions where dataset = 'demo' and task in (select unnest(?::varchar[])) "
                           "order by instruction_id", [list(EVENT_TASKS)]).df().to_dict("records")
        forms = llemr.event_form(con, rows, spec)
        r = next(r for r in rows if forms[r["instruction_id"]]["events"]["description_ids"])
        lin = json.loads(r["lineage"])
        times = con.execute(
            "select count(*) from marts.fct_event_features where hadm_id = ? and event_time >= ?::timestamp and "
            "event_time < ?::timestamp and event_type in (select unnest(?::varchar[]))",
            [lin["hadm_id"], lin["context"]["window_start"], lin["context"]["window_end"],
             [t for t in spec.event_types if lin.get("target") != "diagnosis" or t != "diagnosis"]]).fetchone()[0]
    assert set(forms) == {r["instruction_id"] for r in rows} and {r["task"] for r in rows} == set(EVENT_TASKS)
    f = forms[r["instruction_id"]]
    ev = f["events"]
    assert f["n_events_window"] == times and len(ev["description_ids"]) == min(times, 40)
    assert ev["hours"] == sorted(ev["hours"])  # oldest first, the most recent kept
    msgs = llemr.event_messages(r, f)
    assert msgs[1]["content"].endswith(r["instruction"]) and msgs[2]["content"] == r["answer"]
    assert llemr.EVENTS_MARKER in msgs[1]["content"] and r["context"].split("\n")[0] in msgs[1]["content"]
    # decision-making rows about diagnoses see no diagnosis event, as their text form
    diag = [x for x in rows if json.loads(x["lineage"]).get("target") == "diagnosis"]
    assert diag
    with warehouse.session(chain_copy, read_only=True) as con:
        types = dict(con.execute("select description_id, event_type from marts.dim_event_descriptions").fetchall())
    assert all(types[d] != "diagnosis" for x in diag for d in forms[x["instruction_id"]]["events"]["description_ids"])


def test_rows_without_a_record_window_are_refused_by_name(demo_warehouse):
    row = {"instruction_id": "note_qa-1", "task": "note_qa", "context": "a note", "lineage": json.dumps({"note_id": 7})}
    with warehouse.session(demo_warehouse, read_only=True) as con:
        with pytest.raises(Exception, match="note_qa-1.*note_qa.*no admission context window.*restrict data.tasks"):
            llemr.event_form(con, [row], llemr.LlemrSpec())


@pytest.fixture
def tiny_setup(chain_copy):
    """Event-form train examples of the chain's demo set on the chain's tiny model, with vectors for their events."""
    from transformers import AutoTokenizer

    from ehrforge.event_embeddings import load_vectors
    from training.config import load_train_config
    from training.data import ensure_chat_template
    from training.recipes.llemr import _rows, examples

    cfg = load_train_config("training/configs/demo/tiny_llemr.yaml",
                            [f"llemr.event_types={json.dumps(TRAIN_TYPES)}", "llemr.max_events=48"])
    with warehouse.session(chain_copy) as con:
        embed_events(con, event_types=TRAIN_TYPES, progress=False)
        rows = [r for r in _rows(con, cfg) if r["split"] == "train"][:24]
        forms = llemr.event_form(con, rows, cfg.llemr)
        index, vectors = load_vectors(con, cfg.llemr.encoder)
        base = con.execute("select base_model_path from training.runs order by created_at desc limit 1").fetchone()[0]
    tok = AutoTokenizer.from_pretrained(base)
    ensure_chat_template(tok, None)
    recs = [{"messages": llemr.event_messages(r, forms[r["instruction_id"]])} for r in rows]
    exs, dropped = examples(tok, recs, index, 1024)
    return cfg, base, tok, exs, index, vectors


def test_placeholders_carry_the_events_and_labels_only_the_answer(tiny_setup):
    cfg, base, tok, exs, index, vectors = tiny_setup
    assert exs
    for e in exs:
        assert sum(e["event_mask"]) == len(e["event_rows"]) == len(e["extras"]) <= 48
        assert e["extras"].shape[1] + vectors.shape[1] == llemr.feature_dim(384)
        labelled = [i for i, t in enumerate(e["labels"]) if t != -100]
        assert labelled and labelled == list(range(labelled[0], len(e["labels"])))  # the answer turn, at the end
        assert not any(e["event_mask"][i] for i in labelled)


def test_the_loss_falls_and_a_reload_gives_identical_outputs(tiny_setup, tmp_path):
    """Projector + LoRA trained a few steps on the event form; the saved artifact (one directory) reloads into a
    model whose logits equal the trained model's, and the merged inference model gives the same generation."""
    import torch

    from training.recipes.llemr import EventCollator, build_model

    cfg, base, tok, exs, index, vectors = tiny_setup
    torch.manual_seed(0)
    model = build_model(cfg, base, llemr.feature_dim(vectors.shape[1]), torch.float32)
    collate = EventCollator(tok.pad_token_id, vectors)
    batch = collate(exs[:6])
    assert batch["event_features"].shape == (int(batch["event_mask"].sum()), llemr.feature_dim(384))
    batch.pop("n_real_tokens")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    model.train()
    for _ in range(8):
        loss = model(**batch).loss
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] * 0.8, losses
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    out = model.save_artifact(tmp_path / "llemr", tok, cfg.llemr, index, vectors, base)
    assert {"adapter_config.json", "projector.safetensors", "event_vectors.safetensors", "llemr.json"} <= \
        {p.name for p in out.iterdir()}
    shutil.copytree(out, tmp_path / "moved")  # one self-contained directory
    again, tok2, spec, index2, vectors2 = llemr.load_artifact(tmp_path / "moved", merge=False)
    with torch.no_grad():
        reloaded = again(**batch).logits
    assert torch.equal(trained, reloaded)
    assert spec == cfg.llemr and index2 == index and np.array_equal(vectors2, vectors)
    merged, *_ = llemr.load_artifact(tmp_path / "moved", merge=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, trained, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_evaluation_scores_both_forms_on_the_same_items(chain_copy, monkeypatch):
    """make embed-events -> make train (tiny llemr) -> make evaluate (demo_llemr spec): the event-embedding model and
    the chain's text LoRA are scored on the same test items, and the leaderboard ranks them together."""
    from evaluation.runner import evaluate
    from evaluation.spec import load_spec
    from training.config import load_train_config
    from training.launch import train

    with warehouse.session(chain_copy) as con:
        embed_events(con, event_types=TRAIN_TYPES, progress=False)
    cfg = load_train_config("training/configs/demo/tiny_llemr.yaml",
                            [f"llemr.event_types={json.dumps(TRAIN_TYPES)}", "llemr.max_events=64",
                             "train.max_steps=12", "data.max_train_examples=96", "train.logging_steps=2"])
    (summary,) = train(cfg)
    assert summary["final_train_loss"] < summary["first_train_loss"]
    assert llemr.is_artifact(summary["output_path"])
    spec = load_spec("evaluation/specs/demo_llemr.yaml", ["data.subset.n_per_task=4", "bootstrap.n=50",
                                                          "generation.max_new_tokens=12"])
    summaries = evaluate(spec, progress=False)
    assert [s.status for s in summaries] == ["succeeded"] * 3
    with warehouse.session(chain_copy, read_only=True) as con:
        ids = dict(con.execute("select r.model_name, list(distinct s.instruction_id order by s.instruction_id) "
                               "from evaluation.scores s join evaluation.eval_runs r using (run_id) "
                               "where r.spec_name = 'demo_llemr' group by 1").fetchall())
        board = con.execute("select distinct model_name, data_version from results.results_leaderboard "
                            "where spec_name = 'demo_llemr'").fetchall()
        form = con.execute("select json_extract_string(config_json, '$.model.form') from meta.runs r join "
                           "evaluation.eval_runs e using (run_id) where e.model_name = 'llemr-lora'").fetchone()[0]
        prompts = con.execute("select p.prompt_tokens from evaluation.predictions p join evaluation.eval_runs e "
                              "using (run_id) where e.model_name = 'llemr-lora'").fetchall()
    assert ids["llemr-lora"] == ids["text-lora"] and len(ids["llemr-lora"]) == 12
    assert {m for m, _ in board} == {"llemr-lora", "text-lora", "most-common-answer"}
    assert len({v for _, v in board}) == 1  # one data version: the same items for all three
    assert form == "events" and all(p[0] > 0 for p in prompts)
