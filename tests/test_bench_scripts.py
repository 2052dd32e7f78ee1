"""The benchmark scripts run on a fresh clone, where bench/out does not exist yet."""

import json
import subprocess
import sys

from ehrforge.paths import REPO_ROOT


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
