"""Cached artifacts that a kill cannot leave half-written: build into a temporary sibling, rename when complete.

    from ehrforge.atomic import atomic_dir, atomic_write_text, is_complete

    if not is_complete(out):                       # missing, or left incomplete by an older version
        with atomic_dir(out) as tmp:               # tmp = <parent>/.<name>.tmp-<pid>; renamed onto `out` at exit
            model.save_pretrained(tmp)
    atomic_write_text(run_dir / "summary.json", text)

A directory made by `atomic_dir` holds a `.complete` marker, written last before the rename, so a reader tells a
finished artifact from a folder an interrupted run (or an older version of this code) left behind. A killed build
leaves only its `.<name>.tmp-<pid>` sibling, which the next build of the same artifact removes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

MARKER = ".complete"


def is_complete(path: str | Path) -> bool:
    """True when `path` is a directory finished by `atomic_dir` (it holds the marker)."""
    return (Path(path) / MARKER).is_file()


def _tmp_siblings(final: Path) -> list[Path]:
    return sorted(final.parent.glob(f".{final.name}.tmp-*"))


def discard(path: str | Path, why: str) -> None:
    """Remove an incomplete artifact (with a log line saying why), so it is rebuilt."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        log.warning("removing incomplete %s (%s); it is rebuilt", path, why)
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        log.warning("removing incomplete %s (%s); it is rebuilt", path, why)
        path.unlink()


def begin(final: str | Path, tmp_name: str | None = None) -> Path:
    """An empty temporary directory next to `final` (stale ones from killed builds removed). With `tmp_name` the
    path is deterministic, so several processes of one job can write into the same one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in _tmp_siblings(final):  # left by a killed build of this artifact
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{tmp_name or os.getpid()}"
    tmp.mkdir()
    return tmp


def commit(tmp: Path, final: str | Path, meta: dict | None = None) -> Path:
    """Mark `tmp` complete and rename it onto `final` (replacing what was there)."""
    final = Path(final)
    marker = {"completed_at": dt.datetime.now(dt.timezone.utc).isoformat(), **(meta or {})}
    (tmp / MARKER).write_text(json.dumps(marker, default=str) + "\n")
    _fsync_dir(tmp)
    if final.is_dir() and not final.is_symlink():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if final.exists() or final.is_symlink():
            final.unlink()
        os.replace(tmp, final)
    _fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def atomic_dir(final: str | Path, meta: dict | None = None) -> Iterator[Path]:
    """Yield an empty temporary directory next to `final`; on success mark it complete and rename it onto `final`
    (replacing whatever was there). On an exception the temporary directory is removed and `final` is untouched."""
    tmp = begin(final)
    try:
        yield tmp
        commit(tmp, final, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a whole file or nothing: a temporary sibling, flushed to disk, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
