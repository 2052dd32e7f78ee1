"""The benchmark scripts run on a fresh clone, where bench/out does not exist yet."""

import json
import subprocess
import sys

import pytest

from ehrforge.paths import REPO_ROOT


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_bench_warehouse_load_floor_creates_its_output_folder(mimic_root, demo_note_root, tmp_path):
    db = tmp_path / "not-yet" / "load.duckdb"
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench/bench_warehouse.py"), "--child", "load", "--root", str(mimic_root),
         "--note-root", str(demo_note_root), "--db", str(db)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["wall_s"] > 0
    assert db.exists()


def test_bench_note_sections_runs_and_versions_agree():
    model = REPO_ROOT / "dbt_project/models/intermediate/notes/int_note_sections.sql"
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench/bench_note_sections.py"), "--notes", "200", "--baseline", str(model)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[1:2] in (["current"], ["baseline"])]
    assert len(rows) == 2 and rows[0][3:] == rows[1][3:] == ["2000", rows[0][4]]  # 10 sections per note
