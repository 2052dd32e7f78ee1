"""One stage of training (cpt or sft) on prepared data, in every process of a run.

    python -m training.trainer --run-dir runs/train/<run_id>      # what `accelerate launch` runs per process

`launch.py` prepares `<run_dir>/prepared/` (data snapshot, resolved config, base model path) in a single
process, so workers never open the warehouse; rank 0 writes `<run_dir>/<stage>/summary.json`, which
`launch.py` turns into warehouse rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.data import (
    IGNORE_INDEX,
    ListDataset,
    PackedCollator,
    PackedDataset,
    PaddedCollator,
    ensure_chat_template,
    note_blocks,
    tokenize_split,
)
from training.recipes import get_recipe

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- loss


def chunked_causal_lm_loss_sum(hidden, lm_head, labels, chunk_tokens: int = 4096):
    """Sum of next-token cross-entropy over labelled positions, without materializing the full logits.

    Only positions whose next label is not IGNORE_INDEX go through the LM head (for SFT that is the answer
    alone), and each chunk is recomputed in backward (activation checkpointing), so peak memory holds one
    chunk of logits, not batch x seq x vocab.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    h = hidden[:, :-1, :].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = y != IGNORE_INDEX
    # The head's own dtype: under mixed precision accelerate returns the model's outputs in float32
    # (convert_outputs_to_fp32), while a bf16-loaded head has bf16 weights.
    h, y = h[keep].to(next(lm_head.parameters()).dtype), y[keep]
    total = hidden.new_zeros((), dtype=torch.float32)

    def _chunk(hc, yc):
        return F.cross_entropy(lm_head(hc).float(), yc, reduction="sum")

    for i in range(0, y.numel(), chunk_tokens):
        hc, yc = h[i : i + chunk_tokens], y[i : i + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk, hc, yc, use_reentrant=False)
        else:
            total = total + _chunk(hc, yc)
    return total, int(keep.sum())


def _make_trainer_class():
    from transformers import Trainer

    class EhrTrainer(Trainer):
        """HF Trainer + chunked answer-only loss, real-token counting and timed evaluation."""

        def __init__(self, *a, chunked_loss: bool = True, loss_chunk_tokens: int = 4096, **kw):
            super().__init__(*a, **kw)
            self.chunked_loss = chunked_loss
            self.loss_chunk_tokens = loss_chunk_tokens
            self.n_real_tokens = 0
            self.eval_seconds = 0.0
            # whole-run figures across resumes: what earlier sessions trained (from the resumed checkpoint)
            self.busy_offset_s = 0.0
            self.t_train_start: float | None = None

        def busy_seconds(self) -> float:
            """Training time of the whole run so far: earlier sessions + this one, evaluations excluded."""
            if self.t_train_start is None:
                return self.busy_offset_s
            return self.busy_offset_s + time.perf_counter() - self.t_train_start - self.eval_seconds

        def save_model(self, output_dir=None, _internal_call=False):
            super().save_model(output_dir, _internal_call=_internal_call)
            if _internal_call and output_dir:
                # A checkpoint save: the progress counters go in before HF writes trainer_state.json (last), so a
                # checkpoint that is complete (has trainer_state.json) always carries them.
                write_progress(Path(output_dir), self.accelerator.process_index,
                               {"real_tokens": self.n_real_tokens, "busy_s": self.busy_seconds()})

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            n_real = inputs.pop("n_real_tokens", None)
            if model.training and n_real is not None:
                self.n_real_tokens += int(n_real)
            if not self.chunked_loss:
                inputs["use_cache"] = False
                if num_items_in_batch is not None:
                    inputs["num_items_in_batch"] = num_items_in_batch
                outputs = model(**inputs)
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            labels = inputs.pop("labels")
            outputs = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
            lm_head = self.accelerator.unwrap_model(model).get_output_embeddings()
            with self.accelerator.autocast():  # the head runs as it would inside the model's (autocast) forward
                loss_sum, n_local = chunked_causal_lm_loss_sum(
                    outputs.hidden_states[-1], lm_head, labels, self.loss_chunk_tokens
                )
            if num_items_in_batch is not None:
                loss = loss_sum / num_items_in_batch
                if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                    # num_items_in_batch is the global count; DDP averages gradients over processes.
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss_sum / max(n_local, 1)
            outputs.hidden_states = None
            return (loss, outputs) if return_outputs else loss

        def evaluate(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return super().evaluate(*a, **kw)
            finally:
                self.eval_seconds += time.perf_counter() - t0

    return EhrTrainer


def loss_curve(log_history: list[dict]) -> list[dict]:
    """Train and val loss rows of the whole run from the trainer's log history, which a resumed run restores from
    its checkpoint: the curve covers every step across resumes (steps logged after the checkpoint and before a
    crash are trained again, and logged once)."""
    rows: list[dict] = []
    seen: set[tuple[int, str]] = set()
    lr = 0.0
    for e in log_history:
        for key, split in (("loss", "train"), ("eval_loss", "val")):
            if key in e and (int(e["step"]), split) not in seen:
                seen.add((int(e["step"]), split))
                lr = float(e.get("learning_rate", lr) or 0.0)
                rows.append({"step": int(e["step"]), "epoch": float(e.get("epoch") or 0.0), "split": split,
                             "loss": float(e[key]), "learning_rate": lr})
    return rows


def mean_logged_loss(curve: list[dict]) -> float | None:
    """Mean train loss over the run: each logged loss (the mean since the previous log) weighted by its steps."""
    prev, total, steps = 0, 0.0, 0
    for r in sorted((r for r in curve if r["split"] == "train"), key=lambda r: r["step"]):
        n = max(r["step"] - prev, 1)
        total, steps, prev = total + r["loss"] * n, steps + n, r["step"]
    return total / steps if steps else None


PROGRESS = "ehrforge_progress-{rank}.json"


def write_progress(ckpt: Path, rank: int, progress: dict) -> None:
    from ehrforge.atomic import atomic_write_text

    atomic_write_text(ckpt / PROGRESS.format(rank=rank), json.dumps(progress))


def read_progress(ckpt: str | Path, rank: int) -> dict:
    for name in (PROGRESS.format(rank=rank), PROGRESS.format(rank=0)):
        path = Path(ckpt) / name
        if path.is_file():
            return json.loads(path.read_text())
    log.warning("%s holds no progress counters (written by an older version): tokens and tokens/s cover only "
                "the steps after the resume", ckpt)
    return {}


# ------------------------------------------------------------------------------------------------ stage


def _dtype(cfg: TrainConfig):
    import torch

    if cfg.model.dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, cfg.model.dtype)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _gradient_checkpointing(cfg: TrainConfig, n_params: int) -> bool:
    gc = cfg.speed.gradient_checkpointing
    if gc == "auto":
        # Recomputing activations costs ~30% speed; only worth it where memory would not hold them:
        # full fine-tuning of multi-billion models, or any model above 8B.
        return (not get_recipe(cfg.method).is_adapter and n_params > 3e9) or n_params > 9e9
    return bool(gc)


def _liger(cfg: TrainConfig) -> bool:
    import importlib.util

    have = importlib.util.find_spec("liger_kernel") is not None
    if cfg.speed.liger is True and not have:
        from ehrforge.errors import ConfigError

        raise ConfigError("speed.liger=true but liger-kernel is not installed (pip install liger-kernel)")
    return bool(cfg.speed.liger) and have


def build_datasets(cfg: TrainConfig, stage: str, tokenizer, prepared: Path) -> dict[str, Any]:
    """Tokenized train/val examples for a stage, and counts for the records."""
    if stage == "sft":
        ensure_chat_template(tokenizer, cfg.model.chat_template)
        train, dropped_train = tokenize_split(tokenizer, _read_jsonl(prepared / "sft_train.jsonl"), cfg.data.max_seq_len)
        val, dropped_val = tokenize_split(tokenizer, _read_jsonl(prepared / "sft_val.jsonl"), cfg.data.max_seq_len)
    else:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        train = note_blocks(tokenizer, _read_jsonl(prepared / "notes_train.jsonl"), cfg.cpt.block_size)
        val = note_blocks(tokenizer, _read_jsonl(prepared / "notes_val.jsonl"), cfg.cpt.block_size)
        dropped_train = dropped_val = 0
    if not train:
        from ehrforge.errors import InputDataError

        raise InputDataError(f"no {stage} training examples left (all longer than the limit?)")
    return {
        "train": train,
        "val": val,
        "n_dropped": dropped_train + dropped_val,
        "n_train_tokens": sum(len(e["input_ids"]) for e in train),
        "n_train_label_tokens": sum(sum(1 for t in e["labels"] if t != IGNORE_INDEX) for e in train),
    }


def training_arguments(cfg: TrainConfig, stage: str, out_dir: Path, use_liger: bool, gc: bool, dtype):
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    is_cpt = stage == "cpt"
    has_eval = t.eval_steps is not None
    early = t.early_stopping_patience is not None and not is_cpt
    bf16 = dtype == torch.bfloat16
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=cfg.speed.packs_per_batch if cfg.speed.packing else t.per_device_batch_size,
        per_device_eval_batch_size=cfg.speed.packs_per_batch if cfg.speed.packing else t.per_device_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=cfg.cpt.epochs if is_cpt else t.epochs,
        max_steps=cfg.cpt.max_steps if is_cpt else t.max_steps,
        learning_rate=cfg.cpt.learning_rate if is_cpt else t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=bf16,
        fp16=dtype == torch.float16,
        gradient_checkpointing=gc,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        torch_compile=cfg.speed.torch_compile,
        use_liger_kernel=use_liger,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length" if (cfg.speed.group_by_length and not cfg.speed.packing) else "random",
        remove_unused_columns=False,
        prediction_loss_only=True,
        report_to=[],
        dataloader_num_workers=t.dataloader_num_workers,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )


WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                "adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json")


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a complete checkpoint (None if it is). HF writes trainer_state.json last, after the
    weights, optimizer and RNG state, so a checkpoint without it (or with a cut-off one) was being written when
    the run stopped."""
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable trainer_state.json ({exc})"
    if not any((path / f).exists() for f in WEIGHT_FILES) and not any(path.glob("pytorch_model_fsdp*")):
        return "no weights"
    return None


def newest_complete_checkpoint(out_dir: Path, discard_incomplete: bool = True) -> str | None:
    """The newest complete `checkpoint-<step>` in `out_dir`; newer incomplete ones are skipped with a log line
    (and removed, so HF's checkpoint rotation never sees them)."""
    import re

    if not out_dir.is_dir():
        return None
    found = []
    for p in out_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        log.warning("skipping incomplete checkpoint %s (%s): it was being written when the run stopped", path,
                    problem)
        if discard_incomplete:
            from ehrforge.atomic import discard

            discard(path, problem)
    return None


def resolve_checkpoint(cfg: TrainConfig, out_dir: Path) -> str | None:
    r = cfg.train.resume
    if r == "never":
        return None
    if r == "auto":
        import torch.distributed as dist

        # only one process removes incomplete checkpoints; the others wait for it
        is_main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        ckpt = newest_complete_checkpoint(out_dir, discard_incomplete=is_main)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        return ckpt
    from ehrforge.errors import ConfigError

    if not Path(r).is_dir():
        raise ConfigError(f"train.resume={r!r} is not a checkpoint directory")
    problem = checkpoint_problem(Path(r))
    if problem:
        raise ConfigError(f"train.resume={r!r} is not a complete checkpoint ({problem}); pick an earlier "
                          "checkpoint-<step> or train.resume=auto (the newest complete one)")
    return r


def save_final(trainer, final_dir: Path) -> None:
    """Save the trained model (adapter or full) + tokenizer to `final_dir` atomically: every process writes into
    one temporary sibling (save_model gathers sharded weights), then the main process renames it."""
    import shutil

    from ehrforge.atomic import begin, commit

    tmp = final_dir.parent / f".{final_dir.name}.tmp-save"
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
        begin(final_dir, tmp_name="save")
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        commit(tmp, final_dir, {"artifact": "trained_model", "step": int(trainer.state.global_step)})
    trainer.accelerator.wait_for_everyone()


def run_stage(cfg: TrainConfig, stage: str, base_path: str, run_dir: Path, callbacks: list | None = None) -> dict:
    """Train one stage; returns (and on rank 0 writes) its summary. Saves `<run_dir>/<stage>/final` (adapter or
    model + tokenizer) and, for LoRA when merging is asked for or a later stage builds on it, `merged/`."""
    import torch
    from transformers import AutoTokenizer, EarlyStoppingCallback, set_seed

    from training.recipes import load_for_training

    prepared = run_dir / "prepared"
    out_dir = run_dir / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=cfg.model.trust_remote_code)
    data = build_datasets(cfg, stage, tokenizer, prepared)
    dtype = _dtype(cfg)
    # Seed before the adapter is initialised: the same config gives the same start, in any process.
    set_seed(cfg.train.seed)
    model = load_for_training(cfg.method, base_path, cfg, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    use_liger = _liger(cfg)
    gc = _gradient_checkpointing(cfg, n_params)
    # FSDP / ZeRO-3 shard the LM head: there the loss must run inside the wrapped forward (plain HF loss).
    sharded = int(os.environ.get("WORLD_SIZE", "1")) > 1 and cfg.resolved_distributed() != "ddp"
    chunked = cfg.speed.chunked_loss and not use_liger and not sharded

    # data -> train
    train_ds, val_ds, collator = _train_datasets(cfg, data, tokenizer)
    args = training_arguments(cfg, stage, out_dir, use_liger, gc, dtype)
    if val_ds is None:
        args.eval_strategy = "no"
        args.load_best_model_at_end = False
    cbs = list(callbacks or [])
    if args.load_best_model_at_end:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=cbs,
        chunked_loss=chunked,
        loss_chunk_tokens=cfg.speed.loss_chunk_tokens,
    )
    ckpt = resolve_checkpoint(cfg, out_dir)
    if ckpt:
        log.info("resuming %s from %s", stage, ckpt)
        progress = read_progress(ckpt, trainer.accelerator.process_index)
        trainer.n_real_tokens = int(progress.get("real_tokens", 0))
        trainer.busy_offset_s = float(progress.get("busy_s", 0.0))
    trainer.t_train_start = time.perf_counter()
    trainer.train(resume_from_checkpoint=ckpt)
    # Tokens/s over the training time of the whole run: this session's wall time minus the evaluations *inside*
    # it (the final evaluation below is not part of that wall time), plus earlier sessions' figures.
    busy = max(trainer.busy_seconds(), 1e-9)

    # measure
    final_eval = _final_eval(trainer, args, val_ds)
    curve = loss_curve(trainer.state.log_history)
    real_tokens = _real_tokens_all_processes(trainer)
    # save (and merge)
    final_dir, merged_dir = _save_outputs(trainer, cfg, stage, out_dir, base_path)
    peak_gb, peak_kind = _peak_memory()
    # record
    summary = {
        "stage": stage,
        "base_model_path": str(base_path),
        **_data_figures(data, train_ds, cfg),
        "n_params": int(n_params),
        "n_trainable_params": int(n_trainable),
        "gradient_checkpointing": gc,
        "chunked_loss": chunked,
        "liger": use_liger,
        "dtype": str(dtype).replace("torch.", ""),
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "resumed_from": ckpt,
        **_loss_figures(curve, final_eval),
        "real_tokens_trained": real_tokens,
        "tokens_per_s": real_tokens / busy,
        "peak_memory_gb": peak_gb,
        "peak_memory_kind": peak_kind,
        "wall_s": time.perf_counter() - t_start,
        "output_path": str(final_dir),
        "merged_path": str(merged_dir) if merged_dir else None,
        "loss_curve": curve,
    }
    if trainer.is_world_process_zero():  # written last: a stage with summary.json is finished
        from ehrforge.atomic import atomic_write_text

        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def _data_figures(data: dict, train_ds, cfg: TrainConfig) -> dict:
    return {
        "n_train_examples": len(data["train"]),
        "n_val_examples": len(data["val"]),
        "n_dropped": data["n_dropped"],
        "n_train_tokens": data["n_train_tokens"],
        "n_train_label_tokens": data["n_train_label_tokens"],
        "packing": cfg.speed.packing,
        "n_packs": len(train_ds) if cfg.speed.packing else None,
    }


def _loss_figures(curve: list[dict], final_eval: dict) -> dict:
    """First / final / mean train loss and first / final / best validation loss over the whole run's curve."""
    evals = [r["loss"] for r in curve if r["split"] == "val"]
    trains = [r["loss"] for r in curve if r["split"] == "train"]
    return {
        "first_train_loss": trains[0] if trains else None,
        "final_train_loss": trains[-1] if trains else None,
        "mean_train_loss": mean_logged_loss(curve),
        "first_eval_loss": evals[0] if evals else None,
        "final_eval_loss": final_eval.get("eval_loss"),
        "best_eval_loss": min(evals) if evals else final_eval.get("eval_loss"),
    }


def _train_datasets(cfg: TrainConfig, data: dict, tokenizer):
    """(train, val or None, collator): packed rows with per-document positions, or padded batches."""
    seed = cfg.train.seed
    if cfg.speed.packing:
        capacity = cfg.speed.pack_tokens
        val = PackedDataset(data["val"], capacity, seed) if data["val"] else None
        return PackedDataset(data["train"], capacity, seed), val, PackedCollator(tokenizer.pad_token_id)
    val = ListDataset(data["val"]) if data["val"] else None
    return ListDataset(data["train"]), val, PaddedCollator(tokenizer.pad_token_id)


def _final_eval(trainer, args, val_ds) -> dict:
    """The final validation figure, evaluating again only when no evaluation ran at the last step."""
    if val_ds is None:
        return {}
    state = trainer.state
    at_end = [e for e in state.log_history if "eval_loss" in e and int(e["step"]) == state.global_step]
    if args.load_best_model_at_end and state.best_metric is not None:
        return {"eval_loss": float(state.best_metric)}  # the model saved is the best one
    if at_end:
        return {"eval_loss": float(at_end[-1]["eval_loss"])}  # the periodic eval at the last step
    return trainer.evaluate()  # logged into log_history: the curve's one final val row


def _real_tokens_all_processes(trainer) -> int:
    import torch

    real_tokens = trainer.n_real_tokens
    if trainer.accelerator.num_processes > 1:
        t = torch.tensor([real_tokens], device=trainer.accelerator.device)
        real_tokens = int(trainer.accelerator.reduce(t, reduction="sum").item())
    return real_tokens


def _save_outputs(trainer, cfg: TrainConfig, stage: str, out_dir: Path, base_path: str) -> tuple[Path, Path | None]:
    """`final/` (adapter or model + tokenizer), and `merged/` for an adapter when asked or a later stage needs it."""
    final_dir = out_dir / "final"
    save_final(trainer, final_dir)
    need_merge = get_recipe(cfg.method).is_adapter and (cfg.output.merge or (stage == "cpt" and "sft" in cfg.stages))
    if need_merge and trainer.is_world_process_zero():
        merge_adapter(final_dir, out_dir / "merged", cfg, base_path)
    trainer.accelerator.wait_for_everyone()
    return final_dir, (out_dir / "merged" if need_merge else None)


def _peak_memory() -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu_max_rss"


def merge_adapter(adapter_dir: Path, out_dir: Path, cfg: TrainConfig, base_path: str) -> Path:
    """Merge a LoRA adapter into its base weights and save a plain transformers model directory."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from training.recipes import load_base

    from ehrforge.atomic import atomic_dir

    base = load_base(base_path, cfg, _dtype(cfg))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    with atomic_dir(out_dir, {"artifact": "merged_model"}) as tmp:
        merged.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(tmp))
    log.info("merged adapter %s into %s", adapter_dir, out_dir)
    return out_dir


def run_stages(run_dir: Path, callbacks: list | None = None) -> list[dict]:
    """All stages of a prepared run, each building on the previous one's (merged) output."""
    from training.config import TrainConfig

    prepared = Path(run_dir) / "prepared"
    cfg = TrainConfig.model_validate_json((prepared / "config.json").read_text())
    meta = json.loads((prepared / "meta.json").read_text())
    base = meta["base_model_path"]
    summaries = []
    for stage in cfg.stages:
        done = Path(run_dir) / stage / "summary.json"
        if done.exists():
            s = json.loads(done.read_text())
            log.info("stage %s already done; reusing %s", stage, s.get("merged_path") or s["output_path"])
        else:
            recipe = get_recipe(cfg.method)
            runner = recipe.run_stage if recipe.run_stage is not None and stage == recipe.stage else run_stage
            s = runner(cfg, stage, base, Path(run_dir), callbacks)
        summaries.append(s)
        base = s.get("merged_path") or s["output_path"]
    return summaries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one training process (started by training.launch)")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_stages(Path(args.run_dir))


if __name__ == "__main__":
    main()
