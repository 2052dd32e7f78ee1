"""Fixtures for the LLM client tests: a tiny model built here (no downloads), a temp warehouse, and real
OpenAI-compatible servers on real sockets (our recording server, and `transformers serve`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
TEXTS = (["yes", "no", "Yes", "No", "the patient was admitted with chest pain; answer yes or no."] * 30
         + ["discharge summary: stable, follow up in clinic. lactate 2.1 mmol/L, heart rate 88."] * 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from ehrforge.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny", TEXTS, vocab_size=320)


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "wh.duckdb"
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    return path


class RecordingServer:
    def __init__(self, port: int, proc, log: Path):
        self.port, self.proc, self.log = port, proc, log
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def received(self, path: str | None = "/v1/chat/completions") -> list[dict]:
        got = http_json(f"http://127.0.0.1:{self.port}/_received")
        return [r for r in got if path is None or r["path"] == path]

    def configure(self, plan=(), delay_s: float = 0.0, reset: bool = True) -> None:
        http_json(f"http://127.0.0.1:{self.port}/_faults", {"plan": list(plan), "delay_s": delay_s, "reset": reset})


@pytest.fixture(scope="session")
def server_proc(tiny_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(HERE / "openai_server.py"), "--model", str(tiny_model),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health", log)
        yield RecordingServer(port, proc, log)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def server(server_proc) -> RecordingServer:
    server_proc.configure(reset=True)
    yield server_proc
    server_proc.configure(reset=True)


@pytest.fixture(scope="session")
def transformers_serve(tiny_model, tmp_path_factory):
    """`transformers serve` (the real third-party server) over the tiny model, on loopback."""
    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        pytest.skip("the transformers CLI is not installed in this environment")
    port = free_port()
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(exe), "serve", str(tiny_model), "--port", str(port), "--host", "127.0.0.1",
                                 "--device", "cpu"], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)
