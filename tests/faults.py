"""Fault injection: start a real command as a subprocess, SIGKILL it at a named point, and hand back what it printed.

    from tests.faults import LogLine, FileAppears, kill_at, run_to_end
    out = kill_at([sys.executable, "-m", "ehrforge.build"], LogLine(r"OK created .* marts\.dim_admissions"), env=env)
    res = run_to_end([sys.executable, "-m", "ehrforge.build"], env=env)

A kill point is a log line (regex over stdout+stderr, line by line) or a file or folder appearing (a glob). The
command is killed with SIGKILL (no handler, no cleanup: what a power cut or the OOM killer does) the moment the
point is seen; a command that ends before its kill point fails the test, so a renamed log line cannot turn the
test into one that never kills.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ehrforge.paths import REPO_ROOT


@dataclass(frozen=True)
class LogLine:
    pattern: str

    def describe(self) -> str:
        return f"log line /{self.pattern}/"


@dataclass(frozen=True)
class FileAppears:
    root: Path
    glob: str

    def describe(self) -> str:
        return f"file {self.root}/{self.glob} appearing"


@dataclass
class Outcome:
    returncode: int | None
    output: str
    killed: bool
    seconds: float


def command_env(**extra: str | None) -> dict[str, str]:
    """The test process's environment (MIMIC_ROOT, EHRFORGE_DUCKDB, ... as the fixtures set them), unbuffered so
    log lines arrive as they are written; a value of None removes the variable."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _start(cmd: list[str], env: dict, cwd: Path | None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=str(cwd or REPO_ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)


def kill_at(cmd: list[str], point: LogLine | FileAppears, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 300.0) -> Outcome:
    """Run `cmd` until `point`, then SIGKILL it. Fails (AssertionError) if the command ends first or times out."""
    env = env or command_env()
    t0 = time.monotonic()
    proc = _start(cmd, env, cwd)
    lines: list[str] = []
    hit = threading.Event()
    pattern = re.compile(point.pattern) if isinstance(point, LogLine) else None

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if pattern is not None and pattern.search(line):
                hit.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    try:
        while time.monotonic() - t0 < timeout:
            if isinstance(point, FileAppears) and any(Path(point.root).glob(point.glob)):
                hit.set()
            if hit.is_set():
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"{' '.join(cmd)} did not reach {point.describe()} in {timeout:.0f} s:\n"
                                 + "".join(lines[-40:]))
    finally:
        proc.wait()
        reader.join(timeout=10)
    output = "".join(lines)
    if not killed:
        raise AssertionError(f"{' '.join(cmd)} ended (exit {proc.returncode}) before {point.describe()}; the kill "
                             f"point is stale:\n{output[-4000:]}")
    return Outcome(proc.returncode, output, True, time.monotonic() - t0)


def run_to_end(cmd: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 300.0) -> Outcome:
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=str(cwd or REPO_ROOT), env=env or command_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return Outcome(res.returncode, res.stdout, False, time.monotonic() - t0)
