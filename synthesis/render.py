"""Render an admission (or a time window of it) as context text, within a token budget.

    r = render_events(admission, events, window_start, window_end, fmt="markdown", max_tokens=1024)
    r.text, r.event_ids, r.visible_after

Two formats share one grouping: events are grouped by minute and event type (one "block" per group).
- markdown (EHR-R1 style): `## Lab [2150-02-05 06:00]` then `- key: value` lines, or a table when a block has
  several rows (a lab panel, a set of vitals);
- compact: one line per event, `2150-02-05 06:00 | lab | MCV | 93 fL | ref 82-98 | abnormal`.

Truncation is on the left and by whole minutes: the most recent minutes are kept, and a minute is either shown
completely or not at all. `visible_after` is the latest dropped minute (None when nothing was dropped), so a time
window (t0, t1] has every one of its events in the context iff t0 > visible_after (and t1 <= window end):
that is how template QA makes sure every question's evidence is in the context. Deterministic: same events,
same budget -> same text.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import pandas as pd

from ehrforge import vocab

TIME_FMT = "%Y-%m-%d %H:%M"
EVENT_TITLES = {event_type: v["title"] for event_type, v in vocab.event_types().items()}
EVENT_COLUMNS = ["event_id", "hadm_id", "event_time", "event_end_time", "event_type", "itemid", "item_label",
                 "value_text", "value_num", "unit", "ref_range_lower", "ref_range_upper", "is_abnormal",
                 "is_implausible"]


def fmt_time(t) -> str:
    return pd.Timestamp(t).strftime(TIME_FMT)


def fmt_num(x: float) -> str:
    """Numbers as a person writes them: 93, 7.45, 0.188 (at most 4 decimals, no trailing zeros)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4f}".rstrip("0").rstrip(".")


def _isnull(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def display_value(ev: Mapping) -> str:
    """The value as shown in the context (and used as the answer of 'value at a time' questions)."""
    text = ev.get("value_text")
    if not _isnull(text) and str(text).strip():
        return str(text).strip()
    num = ev.get("value_num")
    return fmt_num(num) if not _isnull(num) else ""


def display_unit(ev: Mapping) -> str:
    unit = ev.get("unit")
    if _isnull(unit) or not str(unit).strip():
        return ""
    unit = str(unit).strip()
    # prescriptions carry the unit inside value_text ("20 mg PO/NG"); do not repeat it
    return "" if unit in display_value(ev) else unit


def _ref(ev: Mapping) -> str:
    lo, hi = ev.get("ref_range_lower"), ev.get("ref_range_upper")
    if _isnull(lo) and _isnull(hi):
        return ""
    return f"{fmt_num(lo) if not _isnull(lo) else ''}-{fmt_num(hi) if not _isnull(hi) else ''}"


def _flag(ev: Mapping) -> str:
    ab = ev.get("is_abnormal")
    return "" if _isnull(ab) else ("abnormal" if bool(ab) else "normal")


def _cell(s: str) -> str:
    return s.replace("|", "/").replace("\n", " ")


def render_block_markdown(event_type: str, minute: pd.Timestamp, rows: list[dict]) -> str:
    title = EVENT_TITLES.get(event_type, event_type)
    head = f"## {title} [{minute.strftime(TIME_FMT)}]"
    if len(rows) == 1:
        ev = rows[0]
        lines = [head, f"- {ev['item_label']}: {(display_value(ev) + ' ' + display_unit(ev)).strip()}"]
        if _ref(ev):
            lines.append(f"- reference range: {_ref(ev)}")
        if _flag(ev):
            lines.append(f"- flag: {_flag(ev)}")
        return "\n".join(lines)
    has_ref = any(_ref(ev) for ev in rows)
    has_flag = any(_flag(ev) for ev in rows)
    cols = ["item", "value", "unit"] + (["reference"] if has_ref else []) + (["flag"] if has_flag else [])
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for ev in rows:
        cells = [ev["item_label"], display_value(ev), display_unit(ev)]
        if has_ref:
            cells.append(_ref(ev))
        if has_flag:
            cells.append(_flag(ev))
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines)


def render_block_compact(event_type: str, minute: pd.Timestamp, rows: list[dict]) -> str:
    out = []
    for ev in rows:
        parts = [minute.strftime(TIME_FMT), event_type, _cell(str(ev["item_label"])),
                 _cell((display_value(ev) + " " + display_unit(ev)).strip())]
        if _ref(ev):
            parts.append(f"ref {_ref(ev)}")
        if _flag(ev):
            parts.append(_flag(ev))
        out.append(" | ".join(parts))
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- token budget

def chars_estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


@functools.lru_cache(maxsize=4)
def _hf_counter(name: str) -> Callable[[str], int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def token_counter(tokenizer: str | None) -> Callable[[str], int]:
    """len(tokenizer(text)) when a tokenizer is configured, else ceil(chars / 4). Both deterministic."""
    return _hf_counter(tokenizer) if tokenizer else chars_estimate


# ------------------------------------------------------------------------------------------------- rendering

@dataclass
class Rendered:
    text: str
    event_ids: list[str]
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    visible_after: pd.Timestamp | None  # latest dropped minute; None when the whole window is shown
    n_events: int
    n_events_shown: int
    n_tokens: int
    shown: list[dict] = field(repr=False, default_factory=list)  # the events in the text, in order

    @property
    def truncated(self) -> bool:
        return self.visible_after is not None

    def covers(self, start, end) -> bool:
        """True iff every event with start <= event_time < end (minute resolution) is in the text."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if start < self.window_start or end > self.window_end:
            return False
        return self.visible_after is None or start.floor("min") > self.visible_after

    def lineage(self) -> dict:
        return {"window_start": fmt_time(self.window_start), "window_end": fmt_time(self.window_end),
                "visible_after": fmt_time(self.visible_after) if self.visible_after is not None else None,
                "n_events": self.n_events, "n_events_shown": self.n_events_shown}


def header(admission: Mapping, window_start, window_end, truncated: bool) -> str:
    """What the record says about the patient and the window. Never outcome fields (death, discharge place)."""
    lines = [
        "# Hospital admission record",
        f"- patient: {admission.get('gender') or 'unknown sex'}, {admission.get('age_at_admission')} years",
        f"- admitted: {fmt_time(admission['admittime'])} ({admission.get('admission_type') or 'unknown type'}, "
        f"from {admission.get('admission_location') or 'unknown location'})",
        f"- record shown: {fmt_time(window_start)} to {fmt_time(window_end)}"
        + (" (earlier events omitted to fit the length limit)" if truncated else ""),
    ]
    return "\n".join(lines)


def _minute_of(t):
    return t.replace(second=0, microsecond=0, nanosecond=0) if isinstance(t, pd.Timestamp) \
        else t.replace(second=0, microsecond=0)


def prepare_events(events: pd.DataFrame) -> list[dict]:
    """Events as plain dicts in render order (minute, event type, label, id), each with `_minute`.
    Column-wise conversion: DataFrame.to_dict over arrow strings was most of the synthesis time."""
    if events.empty:
        return []
    cols = list(events.columns)
    arrays = []
    for c in cols:
        col = events[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            arrays.append(list(col.dt.to_pydatetime()))
        else:
            arrays.append(col.astype(object).where(col.notna(), None).tolist())
    recs = [dict(zip(cols, v)) for v in zip(*arrays)]
    for r in recs:
        r["_minute"] = _minute_of(r["event_time"])
    recs.sort(key=lambda r: (r["_minute"], r["event_type"], r["item_label"] or "", r["event_id"]))
    return recs


def _fit(records: list[dict], fmt: str, budget: int, count_tokens) -> tuple[list[tuple[int, int]], list, bool]:
    """Minute groups of `records` (in render order), and the newest ones that fit in `budget` tokens.
    Returns (bounds, kept [(group index, text)] oldest first, whether the budget stopped it)."""
    block_fn = render_block_markdown if fmt == "markdown" else render_block_compact
    sep = "\n\n" if fmt == "markdown" else "\n"
    bounds: list[tuple[int, int]] = []
    i = 0
    while i < len(records):
        m = records[i]["_minute"]
        j = i
        while j < len(records) and records[j]["_minute"] == m:
            j += 1
        bounds.append((i, j))
        i = j
    kept: list[tuple[int, str]] = []
    used = 0
    stopped = False
    for idx in range(len(bounds) - 1, -1, -1):
        a, b = bounds[idx]
        group = records[a:b]
        blocks, k = [], 0
        while k < len(group):
            t = group[k]["event_type"]
            kk = k
            while kk < len(group) and group[kk]["event_type"] == t:
                kk += 1
            blocks.append(block_fn(t, group[0]["_minute"], group[k:kk]))
            k = kk
        text = sep.join(blocks)
        cost = count_tokens(text) + 1
        if used + cost > budget:
            stopped = True
            break
        used += cost
        kept.append((idx, text))
    kept.reverse()
    return bounds, kept, stopped


def render_events(admission: Mapping, events, window_start, window_end, fmt: str = "markdown",
                  max_tokens: int = 1024, count_tokens: Callable[[str], int] = chars_estimate) -> Rendered:
    """Render the events of one admission with window_start <= event_time < window_end (others are ignored).

    `events`: a DataFrame with EVENT_COLUMNS (converted lazily from the newest rows back, so the cost follows the
    budget, not the length of the stay), or the output of `prepare_events`.
    """
    window_start, window_end = pd.Timestamp(window_start), pd.Timestamp(window_end)
    head_full = header(admission, window_start, window_end, truncated=True)
    budget = max_tokens - count_tokens(head_full) - 2
    sep = "\n\n" if fmt == "markdown" else "\n"
    if isinstance(events, pd.DataFrame):
        frame = events[(events["event_time"] >= window_start) & (events["event_time"] < window_end)]
        frame = frame.sort_values("event_time", kind="mergesort")
        n_total = len(frame)
        chunk = 256
        while True:
            start = max(0, n_total - chunk)
            records = prepare_events(frame.iloc[start:])
            if start > 0 and records:  # the oldest minute of a chunk may be cut: leave it for a larger chunk
                first = records[0]["_minute"]
                records = [r for r in records if r["_minute"] != first]
            bounds, kept, stopped = _fit(records, fmt, budget, count_tokens)
            if stopped or start == 0:
                break
            chunk *= 4
    else:
        lo = bisect.bisect_left(events, window_start, key=lambda r: r["_minute"])
        records = [r for r in events[max(lo - 1, 0):] if window_start <= r["event_time"] < window_end]
        n_total = len(records)
        bounds, kept, stopped = _fit(records, fmt, budget, count_tokens)
    first_kept = kept[0][0] if kept else len(bounds)
    visible_after = records[bounds[first_kept - 1][0]]["_minute"] if first_kept > 0 else None
    if visible_after is not None:
        visible_after = pd.Timestamp(visible_after)
    body = sep.join(t for _, t in kept)
    text = header(admission, window_start, window_end, truncated=visible_after is not None)
    text += "\n\n" + (body if body else "(no events in this window)")
    shown = records[bounds[first_kept][0]:] if kept else []
    return Rendered(text=text, event_ids=[r["event_id"] for r in shown], window_start=window_start,
                    window_end=window_end, visible_after=visible_after, n_events=n_total,
                    n_events_shown=len(shown), n_tokens=count_tokens(text), shown=shown)
