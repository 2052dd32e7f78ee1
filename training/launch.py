"""Train from the warehouse: prepare data, run one process or `accelerate launch` many, record the run.

    python -m training.launch --config training/configs/demo/tiny_lora.yaml [--num-gpus N] [key=value ...]
    make train CONFIG=training/configs/llama3/8b_lora.yaml NUM_GPUS=8 ARGS="train.max_steps=1000"

One process (1 GPU or CPU) runs in-process. NUM_GPUS>1 runs `accelerate launch` with
training/accelerate/<ddp|fsdp|zero3>.yaml (from `distributed=`, auto: ddp for LoRA, fsdp for full). Without
CUDA, NUM_GPUS>1 starts that many CPU processes over gloo (how the multi-process path is tested).

Steps: (1) validate the config; (2) in this process only, read the train/val splits (and train-patient notes
for cpt) from the warehouse or the export into `<run_dir>/prepared/`, and build the tiny model for tiny://;
(3) train every stage; (4) write training.runs / training.loss_curve and print a summary. The same config
maps to the same run dir, so rerunning after an interruption resumes from the newest complete checkpoint
(incomplete ones are skipped with a log line). Rerunning a finished run reports it and changes nothing;
`--retrain` trains it again from scratch. Exit status: 0 trained (or already finished); 2 bad config or input
(incl. marts from an unfinished or failed build); 1 training failed. Any error marks the run `failed` in
meta.runs with the reason (when the run records to the warehouse).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from ehrforge.errors import ConfigError, EhrforgeError, RunFailedError, exit_code
from ehrforge.paths import REPO_ROOT, runs_dir
from training.config import TrainConfig, load_train_config, run_id_for

log = logging.getLogger(__name__)

ACCELERATE_DIR = REPO_ROOT / "training" / "accelerate"


def run_dir_for(cfg: TrainConfig) -> Path:
    return Path(cfg.output.dir) if cfg.output.dir else runs_dir() / "train" / run_id_for(cfg)


# ---------------------------------------------------------------------------------------------- prepare


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")


def _split_notes_by_patient(notes: list[dict], val_fraction: float) -> tuple[list[dict], list[dict]]:
    """Held-out CPT loss uses a stable hash-chosen subset of train patients (never val/test patients)."""
    def bucket(sid: int) -> float:
        return int(hashlib.sha256(str(sid).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [n for n in notes if bucket(n["subject_id"]) < val_fraction]
    train = [n for n in notes if bucket(n["subject_id"]) >= val_fraction]
    return (train or notes), val


def tiny_model_path(cfg: TrainConfig, texts: list[str]) -> Path:
    """Build (once, cached by content) the tiny model for `model.base: tiny://`."""
    from ehrforge.tiny_model import cached_tiny_model

    spec = cfg.model.tiny
    return cached_tiny_model(texts[: spec.max_texts], prefix="tiny", vocab_size=spec.vocab_size,
                             hidden_size=spec.hidden_size, num_layers=spec.num_layers, num_heads=spec.num_heads)


def prepare(cfg: TrainConfig, run_dir: Path) -> dict:
    """Snapshot everything the workers need into `<run_dir>/prepared/` (they never open the warehouse). Written
    into a temporary folder and renamed when complete, so no process ever reads a half-written snapshot."""
    from ehrforge.atomic import atomic_dir

    with atomic_dir(run_dir / "prepared", {"artifact": "prepared_data"}) as prepared:
        meta, texts = _snapshot(cfg, prepared)
        if cfg.model.is_tiny:
            meta["base_model_path"] = str(tiny_model_path(cfg, texts))
        else:
            from ehrforge.models import resolve_model_path

            meta["base_model_path"] = resolve_model_path(cfg.model.base)
        (prepared / "config.json").write_text(cfg.model_dump_json(indent=1))
        (prepared / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _snapshot(cfg: TrainConfig, prepared: Path) -> tuple[dict, list[str]]:
    from ehrforge import warehouse
    from training import data as tdata

    from training.recipes import get_recipe

    meta: dict = {}
    texts: list[str] = []
    recipe = get_recipe(cfg.method)
    own_stage = recipe.snapshot is not None and recipe.stage in cfg.stages  # e.g. grpo: prompts + gold answers
    need_wh = "cpt" in cfg.stages or own_stage or ("sft" in cfg.stages and not cfg.data.export_path)
    con = warehouse.connect(read_only=True, wait_s=30) if need_wh else None
    try:
        if con is not None:
            warehouse.require_finished_build(con)  # the check every job runs before reading mart-derived data
        if "sft" in cfg.stages:
            if cfg.data.export_path:
                inst = tdata.load_from_export(cfg.data.export_path, cfg.data)
            else:
                inst = tdata.load_from_warehouse(con, cfg.data)
            for split in ("train", "val"):
                _write_jsonl(prepared / f"sft_{split}.jsonl", inst.splits.get(split, []))
            meta.update(sft_data_version=inst.data_version, sft_source=inst.source, sft_counts=inst.counts())
            texts += [m["content"] for r in inst.splits["train"] for m in r["messages"]]
        if own_stage:
            stage_meta, stage_texts = recipe.snapshot(con, cfg, prepared)
            meta.update(stage_meta)
            texts += stage_texts
        if "cpt" in cfg.stages:
            notes = tdata.load_train_notes(con, cfg.cpt, cfg.data.splits_table)
            train, val = _split_notes_by_patient(notes, cfg.cpt.val_fraction)
            _write_jsonl(prepared / "notes_train.jsonl", train)
            _write_jsonl(prepared / "notes_val.jsonl", val)
            digest = hashlib.sha256("".join(str(n["note_id"]) for n in notes).encode()).hexdigest()[:16]
            meta.update(cpt_data_version=digest, cpt_source=f"{cfg.cpt.notes_table}[split=train]",
                        cpt_counts={"train": len(train), "val": len(val)})
            texts = [n["text"] for n in notes] + texts
    finally:
        if con is not None:
            con.close()
    return meta, texts


# ----------------------------------------------------------------------------------------------- launch


def accelerate_config(cfg: TrainConfig, num_gpus: int) -> Path:
    name = "single_gpu" if num_gpus <= 1 else cfg.resolved_distributed()
    path = ACCELERATE_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no accelerate config {path}")
    return path


def validate_accelerate_config(path: Path) -> dict:
    """Load an accelerate config the way `accelerate launch` does; check the DeepSpeed JSON it points to."""
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    ClusterConfig.from_yaml_file(str(path))
    raw = yaml.safe_load(path.read_text())
    ds = raw.get("deepspeed_config") or {}
    if ds.get("deepspeed_config_file"):
        ds_path = (REPO_ROOT / ds["deepspeed_config_file"]).resolve()
        conf = json.loads(ds_path.read_text())
        if conf.get("zero_optimization", {}).get("stage") not in (1, 2, 3):
            raise ConfigError(f"{ds_path}: zero_optimization.stage must be 1, 2 or 3")
    return raw


def launch_workers(cfg: TrainConfig, run_dir: Path, num_gpus: int) -> None:
    import torch

    acc = accelerate_config(cfg, num_gpus)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc),
           "--num_processes", str(num_gpus), "--num_machines", "1"]
    if not torch.cuda.is_available():
        if cfg.resolved_distributed() == "zero3":
            raise ConfigError("DeepSpeed ZeRO-3 needs CUDA GPUs; on CPU use distributed=ddp or fsdp")
        # CPU processes over gloo: accelerate's multi-process launcher with the CPU flag in the environment.
        if cfg.resolved_distributed() == "fsdp":
            log.warning("accelerate has no FSDP on CPU: the %d CPU processes run plain data parallel (gloo); "
                        "the FSDP path itself needs CUDA GPUs", num_gpus)
        env["ACCELERATE_USE_CPU"] = "true"
        cmd += ["--mixed_precision", "no"]
    cmd += ["-m", "training.trainer", "--run-dir", str(run_dir)]
    log.info("launching %d processes: %s", num_gpus, " ".join(cmd))
    proc = subprocess.run(cmd, env=env, cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        raise RunFailedError(f"training processes failed (exit {proc.returncode}); see the log above. "
                            f"Rerun the same command to resume from the last checkpoint in {run_dir}")


def finished_summaries(cfg: TrainConfig, run_dir: Path) -> list[dict] | None:
    """The stage summaries of a finished run (every stage wrote summary.json, last of all), else None."""
    paths = [run_dir / stage / "summary.json" for stage in cfg.stages]
    if not all(p.is_file() for p in paths):
        return None
    return [json.loads(p.read_text()) for p in paths]


def _recorded(run_id: str) -> bool:
    from ehrforge import warehouse
    from training.records import RUNS_TABLE

    with warehouse.session(wait_s=30) as con:
        if not warehouse.table_exists(con, RUNS_TABLE):
            return False
        return bool(warehouse.fetch_scalar(con, f"select count(*) from {RUNS_TABLE} where run_id = ?", [run_id]))


def _mark_failed(run_id: str, exc: BaseException) -> None:
    from ehrforge import warehouse

    try:
        with warehouse.session(wait_s=30) as con:
            if warehouse.table_exists(con, "meta.runs"):
                warehouse.mark_failed(con, run_id, exc)
    except EhrforgeError as err:
        log.warning("could not mark run %s failed in meta.runs: %s", run_id, err)


def train(cfg: TrainConfig, num_gpus: int = 1, callbacks: list | None = None, retrain: bool = False) -> list[dict]:
    """Prepare, train every stage, record. Returns the per-stage summaries (also in `<run_dir>/<stage>/`).

    A finished run (every stage's summary.json present) is reported and left as it is, unless `retrain`: then its
    stage folders are removed and it trains from scratch."""
    import shutil

    from training import records
    from training.trainer import run_stages

    run_id = run_id_for(cfg)
    run_dir = run_dir_for(cfg)
    done = finished_summaries(cfg, run_dir)
    if done is not None and not retrain:
        log.info("run %s already finished (%s); nothing was changed. Pass --retrain to train it again.", run_id,
                 run_dir)
        if cfg.output.record and not _recorded(run_id):  # e.g. the warehouse was locked when it finished
            records.write_records(cfg, json.loads((run_dir / "prepared" / "meta.json").read_text()), done, run_id)
        return done
    if retrain:
        for stage in cfg.stages:
            if (run_dir / stage).exists():
                log.info("--retrain: removing %s", run_dir / stage)
                shutil.rmtree(run_dir / stage)
    log.info("run %s -> %s", run_id, run_dir)
    if cfg.output.record:
        records.open_run(cfg, run_id)
    try:
        meta = prepare(cfg, run_dir)
        if num_gpus > 1:
            launch_workers(cfg, run_dir, num_gpus)
            summaries = [json.loads((run_dir / s / "summary.json").read_text()) for s in cfg.stages]
        else:
            summaries = run_stages(run_dir, callbacks=callbacks)
        if cfg.output.record:
            records.write_records(cfg, meta, summaries, run_id)
    except BaseException as exc:
        if cfg.output.record:
            _mark_failed(run_id, exc)
        raise
    from ehrforge.atomic import atomic_write_text

    atomic_write_text(run_dir / "summary.txt", records.summary_text(run_id, summaries) + "\n")
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training/configs/<family>/<size>_<method>.yaml")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs; CPU processes without CUDA)")
    parser.add_argument("--validate-only", action="store_true", help="check the config and exit")
    parser.add_argument("--retrain", action="store_true",
                        help="train a finished run again from scratch (a finished run is otherwise left as it is)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100 lora.r=8")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(args.config, args.overrides)
        validate_accelerate_config(accelerate_config(cfg, args.num_gpus))
        if args.validate_only:
            print(f"{args.config}: valid (run {run_id_for(cfg)})")
            return 0
        summaries = train(cfg, num_gpus=args.num_gpus, retrain=args.retrain)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)  # 2 bad input or config, 1 training failed (docs/crash-safety.md)
    from training.records import summary_text

    print(summary_text(run_id_for(cfg), summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
