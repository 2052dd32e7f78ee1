"""The evidence graph (dbt_project/models/marts/graph) on the real demo: built from train-split patients only, with
support / confidence / lift recomputed here in pandas from fct_entity_events."""

from __future__ import annotations

import itertools

import duckdb
import pytest


@pytest.fixture(scope="module")
def graph(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        ents = con.execute("select e.entity_id, e.hadm_id, s.split from marts.fct_entity_events e "
                           "join marts.dim_splits s using (subject_id)").df()
        nodes = con.execute("select * from marts.dim_evidence_nodes").df()
        pairs = con.execute("select * from marts.fct_evidence_pairs").df()
        n_train_adm = con.execute("select count(*) from marts.dim_admissions a join marts.dim_splits s "
                                  "using (subject_id) where s.split = 'train'").fetchone()[0]
    finally:
        con.close()
    return ents, nodes, pairs, n_train_adm


def test_no_val_or_test_patient_contributes(graph):
    ents, nodes, pairs, n_train_adm = graph
    train = ents[ents.split == "train"].drop_duplicates(["entity_id", "hadm_id"])
    held_out_only = set(ents[ents.split != "train"].entity_id) - set(train.entity_id)
    assert held_out_only, "the demo has entities seen only in val/test admissions: the check below is sharp"
    assert not (set(nodes.entity_id) & held_out_only)
    train_counts = train.groupby("entity_id").size()
    all_counts = ents.drop_duplicates(["entity_id", "hadm_id"]).groupby("entity_id").size()
    assert (nodes.set_index("entity_id")["n_admissions"] == train_counts.reindex(nodes.entity_id)).all()
    assert (all_counts.reindex(nodes.entity_id).values > nodes["n_admissions"].values).any(), \
        "some node also occurs in val/test admissions (which are not counted)"
    assert (nodes["n_train_admissions"] == n_train_adm).all()


def test_pair_figures_recomputed(graph):
    ents, nodes, pairs, n_train_adm = graph
    assert len(pairs) > 1000 and set(pairs.antecedent_type) >= {"diagnosis", "abnormal_lab", "medication"}
    train = ents[(ents.split == "train") & ents.entity_id.isin(nodes.entity_id)].drop_duplicates(
        ["entity_id", "hadm_id"])
    by_adm = train.groupby("hadm_id")["entity_id"].apply(set)
    n_of = nodes.set_index("entity_id")["n_admissions"]
    sample = pairs.sort_values("pair_id").head(40)
    for p in sample.to_dict("records"):
        both = sum(1 for s in by_adm if p["antecedent_id"] in s and p["consequent_id"] in s)
        assert p["n_admissions"] == both
        assert p["support"] == pytest.approx(both / n_train_adm)
        assert p["confidence"] == pytest.approx(both / n_of[p["antecedent_id"]])
        assert p["lift"] == pytest.approx(p["confidence"] / (n_of[p["consequent_id"]] / n_train_adm))
    # thresholds (dbt vars in dbt_project.yml) hold for every row
    assert pairs["n_admissions"].min() >= 3 and pairs["n_patients"].min() >= 2
    assert pairs["confidence"].min() >= 0.3 and pairs["lift"].min() >= 1.2
    # both directions of a rule are separate rows with their own confidence and the same lift
    one = sample.iloc[0]
    back = pairs[(pairs.antecedent_id == one.consequent_id) & (pairs.consequent_id == one.antecedent_id)]
    if len(back):
        assert back.iloc[0]["lift"] == pytest.approx(one["lift"])
    assert not any(a == b for a, b in itertools.islice(zip(pairs.antecedent_id, pairs.consequent_id), 1000))
