"""The GPU call's figures against every target: one results.json from the parts' outputs, and the markdown tables.

    python3 bench/gpu_report.py collect --work DIR --kit bench/out/gpu --out $OUT   # on the GPU machine (gpu.sh all)
    python3 bench/gpu_report.py render FOLDER --out docs/benchmarks-gpu.md          # here, on what came back
    python3 bench/gpu_report.py render --empty --out docs/benchmarks-gpu.md         # the tables, "not yet measured"
    make gpu-report RESULTS=FOLDER

Standard library only: it runs on the GPU machine as it is, and here without the venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PARTS = ["setup", "train-1b", "train-8b", "llm", "tests", "eval", "report"]
TARGETS = {
    "train-1b": "≥ 45,000 real tokens/s, 1B LoRA (our trainer)",
    "train-8b": "≥ 45 % MFU, 8B LoRA (6·N·tokens/s over the H100's 989 TFLOP/s bf16 datasheet figure)",
    "llm": "≥ 10,000 generated tokens/s, 1B, 64 × 512-token prompts, 128 new tokens",
    "eval": "evaluation items/s (no number set: measured, with the speed-up over a per-item loop)",
    "tests": "every GPU test passes on CUDA",
}
NOT_MEASURED = "not yet measured"


# ---------------------------------------------------------------------------------------------------- collect


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tests(path: Path, live: Path) -> list[dict] | None:
    """Outcomes from pytest's junit XML, or, when the part was cut before pytest wrote it, from the JSONL that
    tests/gpu/conftest.py appends to as each test ends."""
    if not path.is_file():
        if not live.is_file():
            return None
        return [json.loads(line) for line in live.read_text().splitlines() if line.strip()]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    out = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or "")[:300]
        out.append({"name": case.get("name"), "module": case.get("classname"), "outcome": outcome,
                    "seconds": float(case.get("time") or 0), "message": message})
    return out


def collect(work: Path, kit: Path, out: Path) -> dict:
    status = {}
    if (work / "status.tsv").is_file():
        for line in (work / "status.tsv").read_text().splitlines():
            part, st, rc, took, box = line.split("\t")
            status[part] = {"status": st, "rc": int(rc), "seconds": int(took), "box_s": int(box)}
    status.setdefault("report", {"status": "ok", "rc": 0, "seconds": 0, "box_s": 5})
    setup = _load(work / "setup.json") or {}
    speed = lambda d: next((_load(p) for p in sorted(d.glob("speed_*.json"))), None)
    results = {
        "schema": 1,
        "collected_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kit": _load(kit / "kit.json") or {},
        "setup": setup,
        "dry_run": bool(setup.get("dry_run")),
        "status": status,
        "train-1b": speed(work),
        "train-8b": speed(work / "8b") if (work / "8b").is_dir() else None,
        "llm": _load(work / "llm.json"),
        "tests": _tests(work / "tests.xml", work / "tests.jsonl"),
        "eval": _load(work / "eval.json"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = render(results)
    (out / "summary.txt").write_text(text)
    print(text)
    return results


# ------------------------------------------------------------------------------------------------------ merge


def merge(runs: list[dict]) -> dict:
    """Several calls in one GPU window (a rerun of the parts that failed or were cut) as one result.

    A part comes from the last call that ran it; generation rows are merged by name (a later call may measure
    only the modes an earlier one did not reach). The header lists every call with its kit's commit.
    """
    out = json.loads(json.dumps(runs[0]))
    out["calls"] = [{"collected_at": r.get("collected_at"), "kit": r.get("kit", {}),
                     "parts": sorted(r.get("status", {}))} for r in runs]
    for r in runs[1:]:
        for part, st in r.get("status", {}).items():
            if part in ("setup", "report"):
                continue
            out["status"][part] = st
            if part == "llm" and out.get("llm") and r.get("llm"):
                rows = {row["name"]: row for row in out["llm"]["rows"]}
                for row in r["llm"]["rows"]:
                    old = rows.get(row["name"])
                    # the one-prompt-at-a-time baseline: the longer measurement stays (a 1-prompt rerun is mostly
                    # warm-up); every ratio is then taken against the baseline that is shown
                    if not (row["name"] == "naive" and old and old.get("n_prompts", 0) > row.get("n_prompts", 0)):
                        rows[row["name"]] = row
                naive = rows.get("naive")
                for row in rows.values():
                    if naive and row is not naive and "tokens_per_s" in row and "tokens_per_s" in naive:
                        row["vs_naive"] = row["tokens_per_s"] / naive["tokens_per_s"]
                out["llm"] = {**r["llm"], "rows": list(rows.values())}
            else:
                out[part] = r.get(part)
        out["collected_at"], out["kit"] = r.get("collected_at"), r.get("kit", {})
    return out


# ----------------------------------------------------------------------------------------------------- render


def _f(x, fmt="{:,.0f}") -> str:
    return NOT_MEASURED if x is None else fmt.format(x)


def _verdict(ok: bool | None, dry: bool) -> str:
    if dry:
        return "n/a (dry run on CPU)"
    return NOT_MEASURED if ok is None else ("**met**" if ok else "**not met**")


def _part_note(results: dict | None, part: str) -> str:
    st = (results or {}).get("status", {}).get(part)
    if not st:
        return NOT_MEASURED
    if st["status"] == "cut":
        return f"part cut for time after {st['seconds']} s (box {st['box_s']} s): rows missing below were not reached"
    if st["status"] == "failed":
        return f"part failed (rc {st['rc']}) after {st['seconds']} s: see gpu.log"
    return f"part finished in {st['seconds']} s (box {st['box_s']} s)"


def _train_table(results: dict | None, part: str, variants: list[str]) -> tuple[list[str], dict | None]:
    rows = (results or {}).get(part) or []
    by = {r["variant"]: r for r in rows}
    base = by.get("hf_padded")
    lines = ["| variant | real tok/s | MFU (989) | MFU (790) | peak GiB | vs HF padded | batch |",
             "|---|---:|---:|---:|---:|---:|---|"]
    names = variants + [v for v in by if v not in variants]
    for v in names:
        r = by.get(v)
        if r is None or "error" in r:
            why = NOT_MEASURED if r is None else f"failed: {r['error'][:120]}"
            lines.append(f"| {v} | {why} | | | | | |")
            continue
        ratio = r["real_tokens_per_s"] / base["real_tokens_per_s"] if base and "error" not in base else None
        lines.append(f"| {v} | {r['real_tokens_per_s']:,.0f} | {100 * r['mfu']:.1f} % | "
                     f"{100 * r.get('mfu_h200_measured', r['mfu'] * 989 / 790):.1f} % | {r['peak_memory_gib']:.1f} | "
                     f"{_f(ratio, '{:.2f}x')} | {r['batch']} |")
    ours = [r for r in rows if r["variant"].startswith("ours") and "error" not in r]
    best = max(ours, key=lambda r: r["real_tokens_per_s"]) if ours else None
    return lines, best


def render(results: dict | None) -> str:
    dry = bool(results and results.get("dry_run"))
    kit = (results or {}).get("kit", {})
    setup = (results or {}).get("setup", {})
    out = ["# GPU benchmarks", ""]
    if results is None:
        out += ["No GPU figure has been measured yet: no GPU was lent to the tasks that built the kit. Every table "
                "below is ready and says *not yet measured*; `make gpu-report RESULTS=<folder>` fills it from the "
                "output of one `bash bench/gpu.sh all` call (docs/gpu.md).", ""]
    else:
        when = results.get("collected_at", "?")
        if len(results.get("calls", [])) > 1:
            out += [f"From {len(results['calls'])} calls in one GPU window; a part comes from the last call that ran "
                    "it (generation rows merged by name): " + "; ".join(
                        f"{c['collected_at']} ({', '.join(c['parts'])}; kit `{c['kit'].get('commit', '?')[:12]}`)"
                        for c in results["calls"]) + ".", ""]
        out += [f"{'**DRY RUN on CPU at small shapes: these are not GPU figures.** ' if dry else ''}"
                f"Measured {when} by `bash bench/gpu.sh all` on {setup.get('device', '?')}; kit built at commit "
                f"`{kit.get('commit', '?')[:12]}`{' (uncommitted changes)' if kit.get('dirty') else ''}; "
                f"python {setup.get('python', '?')}, torch {setup.get('torch', '?')}, transformers "
                f"{setup.get('transformers', '?')}, peft {setup.get('peft', '?')}.", ""]
    out += ["Models are random-init Llama shapes (Llama-3.2-1B, Llama-3.1-8B; weights do not change speed) in bf16 "
            "with sdpa; training examples have the token lengths of the demo instruction set (bench/bench_train.py). "
            "MFU = 6 · N_params · real tokens/s over 989 TFLOP/s (H100 bf16 datasheet, the target's denominator) "
            "and over ~790 TFLOP/s (an 8192³ bf16 matmul measured on the H200).", ""]

    out += ["## Targets", "", "| target | figure | verdict |", "|---|---|---|"]
    _, best1 = _train_table(results, "train-1b", [])
    _, best8 = _train_table(results, "train-8b", [])
    llm = (results or {}).get("llm") or {}
    gen = [r for r in llm.get("rows", []) if r.get("mode") != "naive" and "error" not in r]
    best_gen = max(gen, key=lambda r: r["tokens_per_s"]) if gen else None
    ev = (results or {}).get("eval") or {}
    tests = (results or {}).get("tests")
    n_pass = sum(t["outcome"] == "passed" for t in tests) if tests else None
    which1 = f" ({best1['variant']})" if best1 else ""
    out.append(f"| {TARGETS['train-1b']} | {_f(best1 and best1['real_tokens_per_s'])}{which1} | "
               f"{_verdict(best1 and best1['real_tokens_per_s'] >= 45_000, dry)} |")
    out.append(f"| {TARGETS['train-8b']} | "
               f"{_f(best8 and 100 * best8['mfu'], '{:.1f} %')} "
               f"{'(' + _f(100 * best8['mfu_h200_measured'], '{:.1f} %') + ' of the H200 measured)' if best8 else ''} | "
               f"{_verdict(best8 and best8['mfu'] >= 0.45, dry)} |")
    out.append(f"| {TARGETS['llm']} | {_f(best_gen and best_gen['tokens_per_s'])}"
               f"{' (' + best_gen['name'] + ')' if best_gen else ''} | "
               f"{_verdict(best_gen and best_gen['tokens_per_s'] >= 10_000, dry)} |")
    ours_ev = ev.get("ours")
    out.append(f"| {TARGETS['eval']} | {_f(ours_ev and ours_ev['items_per_s'], '{:.2f} items/s')}"
               f"{' (' + format(ev['speedup'], '.1f') + 'x the per-item loop)' if ev.get('speedup') else ''} | "
               f"{'n/a (dry run on CPU)' if dry else ('measured' if ours_ev else NOT_MEASURED)} |")
    out.append(f"| {TARGETS['tests']} | {NOT_MEASURED if tests is None else f'{n_pass}/{len(tests)} passed'} | "
               f"{_verdict(None if tests is None else (n_pass == len(tests) and len(tests) > 0), dry)} |")
    out.append("")

    out += ["## Training, 1B LoRA (r 16, all linear layers): our trainer vs HF Trainer + peft, padded per batch", "",
            _part_note(results, "train-1b"), ""]
    # the GPU run's rows, in order, even where not reached; a dry run (other shapes) shows the rows it has
    out += _train_table(results, "train-1b", [] if dry else ["ours:2048x8", "hf_padded", "ours:4096x4",
                                                             "ours_nochunk:2048x8", "ours_compile:2048x8"])[0] + [""]
    out += ["## Training, 8B LoRA (r 16, all linear layers): the same two", "", _part_note(results, "train-8b"), ""]
    out += _train_table(results, "train-8b", [] if dry else ["ours:2048x4", "hf_padded", "ours:4096x2"])[0] + [""]

    out += ["## Generation, 1B: the transformers backend's modes vs one prompt at a time", "",
            _part_note(results, "llm") + (f"; {llm['n_prompts']} prompts x {llm['prompt_tokens']} tokens, "
                                          f"{llm['new_tokens']} new" if llm else ""), "",
            "| mode | batch | tokens/s | vs one prompt at a time |", "|---|---:|---:|---:|"]
    by = {r["name"]: r for r in llm.get("rows", [])}
    expected = ["naive"] if dry else ["naive", "dynamic b64", "static b64", "compile b64"]
    for name in expected + [n for n in by if n not in expected]:
        r = by.get(name)
        label = "one prompt at a time" if name == "naive" else name.rsplit(" ", 1)[0]
        bs = "1" if name == "naive" else name.rsplit(" b", 1)[-1]
        if r is None or "error" in r:
            lines = NOT_MEASURED if r is None else f"failed: {r['error'][:120]}"
            out.append(f"| {label} | {bs} | {lines} | |")
        else:
            out.append(f"| {label} | {r['batch_size']} | {r['tokens_per_s']:,.0f} | "
                       f"{_f(r.get('vs_naive', 1.0), '{:.1f}x')} |")
    out.append("")

    out += ["## GPU tests (`pytest -m gpu tests/gpu`)", "", _part_note(results, "tests"), "",
            "| test | outcome | seconds |", "|---|---|---:|"]
    names = ["test_packed_loss_equals_per_example_loss_bf16_sdpa", "test_chunked_loss_equals_model_loss_and_gradients",
             "test_static_cache_generation_equals_dynamic[bfloat16]", "test_static_cache_generation_equals_dynamic[float32]",
             "test_lora_run_lowers_loss_and_reloads_to_same_logits"]
    got = {t["name"]: t for t in tests or []}
    for name in names + [n for n in got if n not in names]:
        t = got.get(name)
        if t is None:
            out.append(f"| {name} | {NOT_MEASURED} | |")
        else:
            msg = f" ({t['message'][:100]})" if t["message"] and t["outcome"] != "passed" else ""
            out.append(f"| {name} | {t['outcome']}{msg} | {t['seconds']:.1f} |")
    out.append("")

    out += ["## Evaluation items/s: the batched pipeline vs a naive per-item loop (1B shape)", "",
            _part_note(results, "eval") + (f"; {ev['n_items']} items {ev['mix']}, max {ev['max_new_tokens']} new "
                                           f"tokens, batch {ev['batch_size']}" if ev else ""), "",
            "| path | items/s | seconds |", "|---|---:|---:|"]
    for key, label in (("ours", "ours (batched, one scoring pass)"), ("naive", "naive per-item loop")):
        r = ev.get(key)
        out.append(f"| {label} | {_f(r and r['items_per_s'], '{:.2f}')} | {_f(r and r['seconds'], '{:.1f}')} |")
    out.append("")

    if results is not None:
        out += ["## Parts and time boxes", "", "| part | status | seconds | box (s) |", "|---|---|---:|---:|"]
        for part in PARTS:
            st = results.get("status", {}).get(part)
            out.append(f"| {part} | {st['status'] if st else 'not run'} | {st['seconds'] if st else ''} | "
                       f"{st['box_s'] if st else ''} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="merge a run's parts into OUT/results.json + OUT/summary.txt")
    c.add_argument("--work", required=True, type=Path)
    c.add_argument("--kit", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    r = sub.add_parser("render", help="markdown tables from FOLDER/results.json (or --empty); several folders: "
                                      "the calls of one GPU window, merged (a part from the last call that ran it)")
    r.add_argument("folder", nargs="*", type=Path)
    r.add_argument("--empty", action="store_true", help="the tables with every figure 'not yet measured'")
    r.add_argument("--out", type=Path, help="write here instead of stdout")
    args = ap.parse_args(argv)
    if args.cmd == "collect":
        collect(args.work, args.kit, args.out)
        return
    if args.empty:
        results = None
    else:
        if not args.folder:
            sys.exit("error: give the folder the GPU call returned (it holds results.json), or --empty")
        runs = []
        for folder in args.folder:
            path = folder / "results.json"
            if not path.is_file():
                sys.exit(f"error: no {path}: give the folder that `bash bench/gpu.sh all` wrote ($OUT), as fetched here")
            run = json.loads(path.read_text())
            if run.get("schema") != 1:
                sys.exit(f"error: {path} has schema {run.get('schema')!r}, this script reads schema 1")
            runs.append(run)
        results = merge(runs)
    text = render(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
