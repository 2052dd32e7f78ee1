"""Export the warehouse marts as a MEDS dataset, or evaluation predictions in meds-evaluation's schema.

    python -m meds_export.cli [key=value ...]                  # = make export-meds (runs/meds/MIMIC-IV-demo)
    python -m meds_export.cli out=/tmp/meds subjects_per_shard=50
    python -m meds_export.cli predictions [--run-id eval-...] [--out DIR]   # = make export-meds-predictions
    python -m meds_export.cli aces [--export DIR] [--out DIR] [--task T]     # = make aces-labels

Reads only warehouse tables (marts.*; for predictions evaluation.*, synthesis.instructions and marts.fct_outcomes;
for aces a finished export and marts.fct_outcomes), opened read-only. Exit status: 0 written; 2 bad input (missing or unfinished marts, an unmapped event type, a table
that fails the MEDS schema); 1 anything else. docs/meds.md describes the codes and the layout.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in ("predictions", "aces") else "export"
    is_predictions = command == "predictions"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if is_predictions:
        argv = argv[1:]
        parser.add_argument("--run-id", action="append", help="eval run(s) (default: every succeeded run)")
        parser.add_argument("--out", help="output folder (default: <runs>/meds/predictions)")
    elif command == "aces":
        argv = argv[1:]
        parser.add_argument("--export", help="the MEDS export (default: <runs>/meds/MIMIC-IV-demo)")
        parser.add_argument("--out", help="output folder (default: <runs>/meds/aces/<export folder name>)")
        parser.add_argument("--task", action="append", help="outcome task(s) (default: every fct_outcomes task)")
    else:
        parser.add_argument("overrides", nargs="*", help="key=value overrides of MedsExportConfig, e.g. out=/tmp/x")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aces").setLevel(logging.WARNING)  # ACES logs every window tree at INFO

    from ehrforge import warehouse
    from ehrforge.errors import EhrforgeError, exit_code

    try:
        with warehouse.session(read_only=True, wait_s=30) as con:
            if command == "aces":
                from pathlib import Path

                from ehrforge.config import load_config
                from meds_export import aces
                from meds_export.export import MedsExportConfig

                export_dir = Path(args.export) if args.export else load_config(None, MedsExportConfig, []).out_dir()
                out = Path(args.out) if args.out else export_dir.parent / "aces" / export_dir.name
                results = aces.run(con, export_dir, out, args.task)
                print(f"ACES labels: {out}")
                for c in results:
                    print(f"  {c.task:<22} ours {c.n_ours:>4}  ACES {c.n_aces:>4}  same instance {c.n_matched:>4}  "
                          f"same label {c.n_equal:>4}  only ours {len(c.only_ours)}  only ACES {len(c.only_aces)}  "
                          f"label differs {len(c.disagree)}  unexplained {len(c.unexplained)}")
                return
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
