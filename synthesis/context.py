"""What every task gets: the warehouse connection, the resolved config, the cohort, splits and events, loaded once.

Events are read from marts.fct_events in one query for the whole cohort (the render config's event types, chart
items restricted to `chart_itemids`), only rows inside their admission (window_status = 'in_admission').
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from ehrforge.errors import InputDataError
from synthesis.config import SynthesisConfig
from synthesis.registry import stable_hash
from synthesis.render import EVENT_COLUMNS, Rendered, prepare_events, render_events, token_counter

log = logging.getLogger(__name__)

COHORT_FILTER = {
    "llemr": "is_llemr_cohort",
    "all_admissions": "is_all_admissions_cohort",
    "all": "true",
}


@dataclass
class BuildContext:
    con: Any
    cfg: SynthesisConfig
    run: Any = None
    admissions: pd.DataFrame = None
    splits: dict[int, str] = field(default_factory=dict)
    events_by_hadm: dict[int, pd.DataFrame] = field(default_factory=dict)
    count_tokens: Callable[[str], int] = None
    rows_so_far: dict[str, list[dict]] = field(default_factory=dict)  # task -> rows (for dependent tasks)
    stats: dict[str, dict] = field(default_factory=dict)               # task -> counters (rejections, calls)
    extra_tables: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows (synthesis.EXTRA_TABLES)
    llm_config: Any = None
    # filled by load(): admissions by hadm_id, an empty events frame, and per-admission caches
    _adm_index: dict[int, dict] = field(default_factory=dict)
    _empty: pd.DataFrame | None = None
    _records: dict[int, list[dict]] = field(default_factory=dict)
    _fingerprints: dict[int, str] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def admission(self, hadm_id: int) -> dict:
        return self._adm_index[hadm_id]

    def admission_fingerprint(self, hadm_id: int) -> str:
        """Version of the source rows a task reads for one admission: its dim_admissions row and every event
        loaded for it (all EVENT_COLUMNS). Part of the ids of rows built from the admission (registry.versioned_id),
        so a changed value, a new or a dropped event gives those rows new ids."""
        hadm_id = int(hadm_id)
        if hadm_id not in self._fingerprints:
            ev = self.events(hadm_id)
            digest = hashlib.sha256(pd.util.hash_pandas_object(ev[EVENT_COLUMNS], index=False).to_numpy().tobytes())
            adm = {k: v for k, v in self.admission(hadm_id).items()}
            self._fingerprints[hadm_id] = stable_hash(adm, len(ev), digest.hexdigest())
        return self._fingerprints[hadm_id]

    def events(self, hadm_id: int) -> pd.DataFrame:
        return self.events_by_hadm.get(hadm_id, self._empty)

    def event_records(self, hadm_id: int) -> list[dict]:
        """The admission's events as dicts in render order (cached: many windows are rendered per admission)."""
        if hadm_id not in self._records:
            self._records[hadm_id] = prepare_events(self.events(hadm_id))
        return self._records[hadm_id]

    def render(self, hadm_id: int, start, end, event_types: list[str] | None = None,
               exclude_types: tuple[str, ...] = ()) -> Rendered:
        ev = self.events(hadm_id)  # a DataFrame: render converts only the rows that fit the budget
        if event_types is not None:
            ev = ev[ev["event_type"].isin(event_types)]
        if exclude_types:
            ev = ev[~ev["event_type"].isin(list(exclude_types))]
        r = self.cfg.render
        return render_events(self.admission(hadm_id), ev, start, end, fmt=r.format, max_tokens=r.max_tokens,
                             count_tokens=self.count_tokens)

    @contextlib.contextmanager
    def cohort_view(self):
        """The cohort's hadm_ids as the view `_synth_cohort` on this connection, for the duration of the block."""
        self.con.register("_synth_cohort", self.admissions[["hadm_id"]])
        try:
            yield
        finally:
            self.con.unregister("_synth_cohort")

    def load(self) -> "BuildContext":
        con, cfg = self.con, self.cfg
        where = COHORT_FILTER[cfg.cohort]
        adm = con.execute(
            f"select a.*, s.split from marts.dim_admissions a join marts.dim_splits s using (subject_id) "
            f"where {where} order by a.hadm_id"
        ).df()
        if cfg.max_admissions and len(adm) > cfg.max_admissions:
            adm["_h"] = [stable_hash(cfg.seed, int(h)) for h in adm["hadm_id"]]
            adm = adm.sort_values("_h").head(cfg.max_admissions).drop(columns="_h").sort_values("hadm_id")
        if adm.empty:
            raise InputDataError(f"cohort {cfg.cohort!r} has no admissions in marts.dim_admissions; "
                                 "check the warehouse build or choose cohort: all")
        self.admissions = adm.reset_index(drop=True)
        self._adm_index = {int(r["hadm_id"]): r for r in self.admissions.to_dict("records")}
        self.splits = dict(con.execute("select subject_id, split from marts.dim_splits").fetchall())
        tokenizer = cfg.render.tokenizer
        if tokenizer == "generator":  # count with the tokenizer of the model the data is for (built if needed)
            from synthesis.llm_io import llm_config

            self.llm_config = llm_config(self)
            tokenizer = self.llm_config.model
        self.count_tokens = token_counter(tokenizer)

        types = list(cfg.render.event_types)
        params: list[Any] = [types]
        chart_clause = ""
        if "chart" in types and cfg.render.chart_itemids is not None:
            chart_clause = " and (e.event_type <> 'chart' or e.itemid in (select unnest(?::varchar[])))"
            params.append(list(cfg.render.chart_itemids))
        with self.cohort_view():
            cols = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
            ev = con.execute(
                f"select {cols} from marts.fct_events e join _synth_cohort c using (hadm_id) "
                f"where e.window_status = 'in_admission' and e.event_type in (select unnest(?::varchar[]))"
                f"{chart_clause} order by e.hadm_id, e.event_time, e.event_type, e.item_label, e.event_id",
                params,
            ).df()
        self._empty = ev.iloc[0:0]
        self._records.clear()
        self.events_by_hadm = {int(h): g for h, g in ev.groupby("hadm_id", sort=True)}
        log.info("loaded %d admissions and %d events (%s)", len(adm), len(ev), ", ".join(types))
        return self

    def cohort_notes(self, task: str, columns: list[str]) -> pd.DataFrame:
        """The cohort's discharge notes (marts.fct_notes) with `columns`, without those whose exact text also belongs
        to a patient of another split (fct_notes.is_text_shared_across_splits): a copied note in train and test
        would leak the test note's text into training. Counts go into stats[task]."""
        cols = ", ".join(f"n.{c}" for c in dict.fromkeys(["note_id", "subject_id", "hadm_id", *columns]))
        with self.cohort_view():
            notes = self.con.execute(
                f"select {cols}, n.is_text_shared_across_splits as _shared from marts.fct_notes n "
                "join _synth_cohort c using (hadm_id) where n.note_type = 'discharge' order by n.note_id").df()
        st = self.stats.setdefault(task, {})
        st["n_cohort_notes"] = len(notes)
        st["n_notes_text_shared_across_splits"] = int(notes["_shared"].fillna(False).sum())
        if st["n_notes_text_shared_across_splits"]:
            log.warning("%s: %d cohort note(s) left out: their exact text belongs to patients of two splits",
                        task, st["n_notes_text_shared_across_splits"])
        return notes[~notes["_shared"].fillna(False).astype(bool)].drop(columns="_shared").reset_index(drop=True)

    def split_of(self, subject_id: int) -> str:
        try:
            return self.splits[int(subject_id)]
        except KeyError:
            raise InputDataError(f"subject {subject_id} has no row in marts.dim_splits; rebuild the warehouse") from None
