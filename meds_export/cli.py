"""Export the warehouse marts as a MEDS dataset, or evaluation predictions in meds-evaluation's schema.

    python -m meds_export.cli [key=value ...]                  # = make export-meds (runs/meds/MIMIC-IV-demo)
    python -m meds_export.cli out=/tmp/meds subjects_per_shard=50
    python -m meds_export.cli predictions [--run-id eval-...] [--out DIR]   # = make export-meds-predictions

Reads only warehouse tables (marts.*; for predictions evaluation.*, synthesis.instructions and marts.fct_outcomes),
opened read-only. Exit status: 0 written; 2 bad input (missing or unfinished marts, an unmapped event type, a table
that fails the MEDS schema); 1 anything else. docs/meds.md describes the codes and the layout.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_predictions = bool(argv) and argv[0] == "predictions"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if is_predictions:
        argv = argv[1:]
        parser.add_argument("--run-id", action="append", help="eval run(s) (default: every succeeded run)")
        parser.add_argument("--out", help="output folder (default: <runs>/meds/predictions)")
    else:
        parser.add_argument("overrides", nargs="*", help="key=value overrides of MedsExportConfig, e.g. out=/tmp/x")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from ehrforge import warehouse
    from ehrforge.errors import EhrforgeError, exit_code

    try:
        with warehouse.session(read_only=True, wait_s=30) as con:
            if is_predictions:
                from meds_export.predictions import export_predictions

                written = export_predictions(con, args.out, args.run_id)
                for path, n in written.items():
                    print(f"{path}: {n} predictions")
                return
            from ehrforge.config import load_config
            from meds_export.export import MedsExportConfig, export_meds

            cfg = load_config(None, MedsExportConfig, args.overrides)
            s = export_meds(con, cfg)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exit_code(exc))
    print(f"MEDS dataset: {s.out}\n  {s.n_events} events, {s.n_subjects} subjects, {s.n_codes} codes, "
          f"{len(s.shards)} data shards ({', '.join(f'{k}: {v}' for k, v in s.shards.items())})")
    if s.labels:
        print("  task labels: " + ", ".join(f"{k} {v}" for k, v in s.labels.items()))


if __name__ == "__main__":
    main()
