"""ICD-coding utility of synthetic notes (SynthNote's downstream test): does a coder trained on generated notes code
real notes as well as one trained on real notes?

    python -m evaluation.icd_utility --dataset demo [--top-codes 30] [--min-train-notes 3]     # = make icd-utility

From the warehouse only:
  * real notes: marts.fct_notes discharge notes with their admission's coded diagnoses (marts.fct_events,
    event_type = 'diagnosis'), split by patient (marts.dim_splits);
  * synthetic notes: synthesis.generated_notes of `dataset`, written by the note_generation task from the SAME
    admissions' codes (config `utility_train_n`), train split only.
Label space: the `top_codes` most frequent codes among the real train notes, each on >= `min_train_notes` notes.
Coder: scikit-learn TF-IDF (word 1-2 grams, sublinear tf) + one-vs-rest logistic regression (liblinear,
class_weight balanced), threshold 0.5. Arms, each tested on the real notes of TEST-split patients:
  real       real notes of the train admissions that also have a synthetic note (paired with `synthetic`)
  synthetic  the synthetic notes of those admissions
  real_all   every real train note (the ceiling the data allows)
Written (declared dbt sources, _icd_utility__sources.yml): evaluation.icd_utility (micro / macro F1, precision,
recall per arm) and evaluation.icd_utility_per_code (F1 per code and arm against its train frequency); the mart
results.results_icd_utility puts the arms side by side; evaluation/report.py plots per-code F1 vs frequency.
A code the arm never saw positive gets F1 0 for that arm (it cannot predict it), and codes with no positive test note
are left out of macro F1 (their F1 is undefined).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ehrforge import tables, warehouse
from ehrforge.config import config_hash
from ehrforge.errors import EhrforgeError, InputDataError, exit_code

log = logging.getLogger(__name__)

UTILITY_TABLE = "evaluation.icd_utility"
PER_CODE_TABLE = "evaluation.icd_utility_per_code"
GENERATED = "synthesis.generated_notes"
ARMS = ("real", "synthetic", "real_all")


class UtilityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="synthesis dataset whose generated notes form the synthetic arm")
    top_codes: int = Field(30, ge=1)
    min_train_notes: int = Field(3, ge=1)
    max_features: int = Field(5000, ge=100)
    C: float = Field(4.0, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1)
    seed: int = 0


def load_real(con) -> pd.DataFrame:
    """One row per real discharge note: note_id, subject_id, hadm_id, split, text, codes (sorted list)."""
    warehouse.require_tables(con, ["marts.fct_notes", "marts.fct_events", "marts.dim_splits"])
    df = con.execute(
        "select n.note_id, n.subject_id, n.hadm_id, s.split, n.clean_text as text, "
        "list(distinct e.itemid order by e.itemid) as codes "
        "from marts.fct_notes n join marts.dim_splits s using (subject_id) "
        "join marts.fct_events e on e.hadm_id = n.hadm_id and e.event_type = 'diagnosis' "
        "where n.note_type = 'discharge' and n.clean_text is not null "
        "group by all order by n.note_id").df()
    df["codes"] = df["codes"].apply(list)
    return df


def load_synthetic(con, dataset: str, real: pd.DataFrame) -> pd.DataFrame:
    """Train-split generated notes of `dataset`, each with the codes of its admission (from the real side)."""
    if not warehouse.table_exists(con, GENERATED):
        return real.iloc[:0]
    gen = con.execute(f"select note_id, note_text as text from {GENERATED} where dataset = ? and split = 'train' "
                      "order by note_id", [dataset]).df()
    return gen.merge(real.drop(columns="text"), on="note_id", how="inner")


def _coder(cfg: UtilityConfig):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=cfg.max_features),
        OneVsRestClassifier(LogisticRegression(C=cfg.C, solver="liblinear", class_weight="balanced",
                                               random_state=cfg.seed)))


def run_arm(train: pd.DataFrame, test: pd.DataFrame, labels: list[str], cfg: UtilityConfig) -> dict:
    """Fit the coder on `train`, score on `test`. Returns summary metrics and per-code rows."""
    from sklearn.metrics import f1_score, precision_score, recall_score
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(classes=labels)
    y_train = mlb.fit_transform(train["codes"].apply(lambda c: [x for x in c if x in set(labels)]))
    y_test = mlb.transform(test["codes"].apply(lambda c: [x for x in c if x in set(labels)]))
    seen = y_train.sum(axis=0) > 0
    pred = np.zeros_like(y_test)
    learnable = seen & (y_train.sum(axis=0) < len(train))  # a code on every train note has no negative class
    if learnable.any():
        model = _coder(cfg).fit(train["text"].tolist(), y_train[:, learnable])
        proba = np.asarray(model.predict_proba(test["text"].tolist()))
        if learnable.sum() == 1 and proba.shape[1] == 2:  # one label: sklearn answers as a binary classifier
            proba = proba[:, 1:]
        pred[:, learnable] = (proba >= cfg.threshold).astype(int)
    pred[:, seen & ~learnable] = 1
    has_pos = y_test.sum(axis=0) > 0
    per_code = f1_score(y_test, pred, average=None, zero_division=0)
    summary = {
        "micro_f1": f1_score(y_test, pred, average="micro", zero_division=0),
        "macro_f1": float(np.mean(per_code[has_pos])) if has_pos.any() else None,
        "micro_precision": precision_score(y_test, pred, average="micro", zero_division=0),
        "micro_recall": recall_score(y_test, pred, average="micro", zero_division=0),
    }
    rows = [{"code": c, "train_notes_with_code": int(y_train[:, i].sum()), "test_notes_with_code": int(y_test[:, i].sum()),
             "n_predicted": int(pred[:, i].sum()), "f1": float(per_code[i]) if has_pos[i] else None}
            for i, c in enumerate(labels)]
    return {"summary": summary, "per_code": rows}


def icd_utility(cfg: UtilityConfig, con=None) -> dict:
    own = con is None
    con = con or warehouse.connect(must_exist=True)
    try:
        warehouse.require_finished_build(con)
        real = load_real(con)
        if real.empty:
            raise InputDataError("marts.fct_notes has no discharge note with coded diagnoses: build the warehouse "
                                 "with notes (MIMIC_NOTE_ROOT, or `make demo-notes` on the demo)")
        train_all = real[real["split"] == "train"]
        test = real[real["split"] == "test"]
        syn = load_synthetic(con, cfg.dataset, real)
        if syn.empty:
            raise InputDataError(
                f"{GENERATED} has no train-split notes for dataset {cfg.dataset!r}: run the synthesis config with "
                f"tasks.note_generation.utility_train_n > 0 and a generator (e.g. make synthesize "
                f"CONFIG=synthesis/configs/demo.yaml ARGS='tasks.note_generation.utility_train_n=200'), or pass "
                f"the --dataset that has them")
        if test.empty:
            raise InputDataError("no real note of a TEST-split patient in marts.fct_notes: nothing to test on")
        counts = pd.Series([c for cs in train_all["codes"] for c in cs]).value_counts()
        labels = sorted(counts[counts >= cfg.min_train_notes].head(cfg.top_codes).index.tolist())
        if not labels:
            raise InputDataError(f"no code is on {cfg.min_train_notes}+ real train notes: lower --min-train-notes")
        paired = train_all[train_all["note_id"].isin(set(syn["note_id"]))]
        arms = {"real": paired, "synthetic": syn, "real_all": train_all}
        run = warehouse.start_run(con, job="icd_utility", config=cfg,
                                  run_id=f"icd-utility-{config_hash(cfg)[:12]}")
        with warehouse.failing_run(con, run):
            summary_rows, code_rows = [], []
            for arm, train in arms.items():
                res = run_arm(train, test, labels, cfg)
                for metric, value in res["summary"].items():
                    summary_rows.append({"dataset": cfg.dataset, "arm": arm, "metric": metric,
                                         "value": None if value is None else float(value),
                                         "n_train_notes": len(train), "n_test_notes": len(test),
                                         "n_codes": len(labels)})
                code_rows += [{"dataset": cfg.dataset, "arm": arm, **r} for r in res["per_code"]]
            warehouse.write_table(con, UTILITY_TABLE, tables.frame(UTILITY_TABLE, summary_rows), run)
            warehouse.write_table(con, PER_CODE_TABLE, tables.frame(PER_CODE_TABLE, code_rows), run)
            warehouse.finish_run(con, run)
        return {"run_id": run.run_id, "summary": pd.DataFrame(summary_rows), "per_code": pd.DataFrame(code_rows),
                "labels": labels}
    finally:
        if own:
            con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--top-codes", type=int, default=30)
    parser.add_argument("--min-train-notes", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = icd_utility(UtilityConfig(dataset=args.dataset, top_codes=args.top_codes,
                                        min_train_notes=args.min_train_notes))
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    wide = res["summary"].pivot_table(index="metric", columns="arm", values="value")
    print(f"ICD-coding utility ({res['run_id']}, {len(res['labels'])} codes; test = real notes of test patients)")
    print(wide.round(3).to_string())
    print(json.dumps({a: int(res["summary"][res["summary"]["arm"] == a]["n_train_notes"].iloc[0]) for a in ARMS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
