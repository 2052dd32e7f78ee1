"""LLM tasks over real HTTP: the llm branch's local OpenAI-compatible test server (tests/llm/openai_server.py, the
tiny model behind FastAPI) as the generator, backend openai on loopback. The server logs what it received: the
synthesis prompts reached it, and its (garbage) replies were rejected with reasons."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

SERVER = Path(__file__).resolve().parents[1] / "llm" / "openai_server.py"


@pytest.fixture
def openai_server(synthesized, tmp_path):
    if not SERVER.exists():
        pytest.skip("tests/llm/openai_server.py (llm branch) is not in this checkout")
    model = Path(synthesized[0]).parent / "tiny-llama"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(SERVER), "--model", str(model), "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_llm_tasks_through_openai_compatible_server(synthesized, openai_server, tmp_path):
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    path = tmp_path / "w.duckdb"
    shutil.copy(synthesized[0], path)
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", [
        "dataset=http", "progress=false", "export=false", "max_admissions=20",
        "tasks.risk_prediction.enabled=false", "tasks.decision_making.enabled=false",
        "tasks.note_generation.enabled=false", "tasks.template_qa.quota=12",
        "tasks.note_qa.quota=3", "tasks.note_reasoning_qa.quota=2", "tasks.question_paraphrase.quota=3",
        "tasks.note_qa.note_max_chars=600", "tasks.note_reasoning_qa.note_max_chars=600",
        "generator.build_tiny_model=false", "generator.llm.backend=openai", "render.tokenizer=null",
        f"generator.llm.base_url={openai_server}/v1", "generator.llm.model=tiny", "generator.llm.concurrency=2"])
    con = duckdb.connect(str(path))
    try:
        res = synthesize(cfg, con=con)
        out = con.execute("select task, status, reject_reason from synthesis.llm_outputs where dataset='http'").df()
    finally:
        con.close()
    received = json.loads(urllib.request.urlopen(f"{openai_server}/_received").read())
    chats = [r for r in received if r["path"].endswith("/chat/completions")]
    assert len(chats) == sum(res["stats"][t]["llm_calls"] for t in ("note_qa", "note_reasoning_qa",
                                                                     "question_paraphrase")) > 0
    assert any("Note:" in json.dumps(r["body"]["messages"]) for r in chats)  # note prompts went over HTTP
    assert set(out["task"]) == {"note_qa", "note_reasoning_qa", "question_paraphrase"}
    assert out[out["status"] == "rejected"]["reject_reason"].notna().all()
