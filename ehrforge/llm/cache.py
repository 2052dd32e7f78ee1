"""The call cache `llm.calls`: one row per distinct call (cache_key), written as soon as the call finishes.

A re-run answers every `status='ok'` key from here, so a run killed at any point (even SIGKILL) and restarted
repeats only the calls that were still in flight. Failed calls are recorded (`status='failed'`, `error`) and
tried again on the next run.

DuckDB allows one writer process: with a connection passed in, every read and write goes through it; without
one, each flush opens the file, writes and closes it again, so no connection is held between flushes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Iterator

from ehrforge import tables

log = logging.getLogger(__name__)

TABLE = "llm.calls"
# Columns, types and primary key are declared once, in dbt_project/models/sources/_llm__sources.yml.
COLUMN_NAMES = tables.columns(TABLE)


def cache_key(model_identity: str, messages: list[dict], params: dict) -> str:
    """sha256 over (model identity, messages, sampling params incl. seed, choices, logprobs)."""
    blob = json.dumps({"model": model_identity, "messages": messages, "params": params},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def prompt_hash(messages: list[dict]) -> str:
    """Short stable hash of a chat prompt (lineage in synthesis and evaluation rows; same prompt, same hash)."""
    blob = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class CallStore:
    def __init__(self, con=None, path: str | Path | None = None):
        self.con = con
        self.path = path
        self._ready = False

    @contextlib.contextmanager
    def session(self) -> Iterator:
        if self.con is not None:
            yield self.con
            return
        from ehrforge import warehouse

        con = warehouse.connect(self.path, wait_s=30.0)
        try:
            yield con
        finally:
            con.close()

    def _ensure(self, con) -> None:
        if self._ready:
            return
        tables.ensure(con, TABLE)
        have = [r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_schema='llm' and table_name='calls' "
            "order by ordinal_position").fetchall()]
        if have != COLUMN_NAMES:
            from ehrforge.errors import WarehouseError

            raise WarehouseError(
                f"{TABLE} has columns {have}, expected {COLUMN_NAMES}; it was made by another version. "
                f"Drop it (`drop table {TABLE}`) to rebuild the cache, or set EHRFORGE_DUCKDB to another file."
            )
        self._ready = True

    def lookup(self, keys: list[str]) -> dict[str, dict]:
        """Rows with status 'ok' for the given keys."""
        if not keys:
            return {}
        with self.session() as con:
            self._ensure(con)
            cur = con.execute(
                f"select {', '.join(COLUMN_NAMES)} from {TABLE} "
                "where status = 'ok' and cache_key in (select unnest(?::varchar[]))", [keys])
            return {r[0]: dict(zip(COLUMN_NAMES, r)) for r in cur.fetchall()}

    def spent(self, run_id: str | None) -> dict:
        """What earlier invocations of this run already spent (calls actually made, not cache hits)."""
        zero = {"calls": 0, "tokens": 0, "cost_usd": 0.0}
        if run_id is None:
            return zero
        with self.session() as con:
            self._ensure(con)
            row = con.execute(
                f"select count(*), coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost_usd), 0) "
                f"from {TABLE} where run_id = ?", [run_id]).fetchall()[0]
        return {"calls": int(row[0]), "tokens": int(row[1]), "cost_usd": float(row[2])}

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        values = [[r.get(c) for c in COLUMN_NAMES] for r in rows]
        placeholders = ", ".join("?" for _ in COLUMN_NAMES)
        with self.session() as con:
            self._ensure(con)
            con.execute("begin transaction")
            try:
                con.executemany(f"insert or replace into {TABLE} ({', '.join(COLUMN_NAMES)}) values ({placeholders})",
                                values)
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
