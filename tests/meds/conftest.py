"""One MEDS export of the demo warehouse per session, in 30-subject shards (several shards per split), read by the
export tests and the ACES tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def export(demo_warehouse, tmp_path_factory):
    pytest.importorskip("meds", reason="the MEDS export needs the `meds` extra: pip install -e '.[meds]'")
    from ehrforge import warehouse
    from meds_export.export import MedsExportConfig, export_meds

    out = tmp_path_factory.mktemp("meds") / "MIMIC-IV-demo"
    with warehouse.session(demo_warehouse, read_only=True) as con:
        return export_meds(con, MedsExportConfig(out=str(out), subjects_per_shard=30))
