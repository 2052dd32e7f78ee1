"""GRPO: group-relative policy optimisation (TRL's GRPOTrainer) with verifiable rewards, on LoRA adapters.

    make train CONFIG=training/configs/smollm2/135m_grpo.yaml     (python -m training.launch --config ...)

EHR-R1's third stage. Prompts are the train-split rows of an instruction set (`data.dataset`, answer types
`grpo.answer_types`; every row's split is checked against its patient's in marts.dim_splits and must be train), in
exactly the chat form SFT and evaluation use (ehrforge.instructions.to_messages, the same system prompt unless
`grpo.system_prompt` sets one). For each prompt `grpo.num_generations` completions are sampled
and scored by two reward functions:

- `correctness`: the one answer verifier shared with evaluation (ehrforge.answers.verify: yes/no polarity, numeric
  match within tolerance, set F1, normalised exact text) on the final answer (the `Answer:` line, else the text
  after any thinking section), in [0, 1];
- `format`: ehrforge.answers.format_score, 0.5 for a final `Answer:` line and 0.5 more for reasoning before it;

weighted by `grpo.correctness_weight` / `grpo.format_weight`. A model that answers plainly earns no format reward
(the same for every completion of a group, so no gradient either); one started from the reasoning SFT model
(`<think>...</think>` answers, EHR-R1's order) earns it. With `grpo.beta > 0` the KL to the starting model
(the base with the adapter switched off: no second copy of the weights) is part of the loss and logged. Every
figure TRL logs (reward, rewards/<fn>/mean, kl, completion lengths, loss, ...) goes into training.reward_curve; the
run's row is in training.runs (stage grpo) and its loss in training.loss_curve, like any run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ehrforge.answers import format_score, parse_response, strip_thinking, verify
from ehrforge.errors import InputDataError
from training.recipes import load_base, register_recipe

log = logging.getLogger(__name__)

PROMPTS_FILE = "grpo_train.jsonl"
# log_history keys that are bookkeeping, not curves
_NOT_CURVES = {"step", "epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
               "train_loss"}


# ------------------------------------------------------------------------------------------------ rewards


def _text(completion) -> str:
    """A completion as text: TRL passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return str(completion or "")


def final_answer(text: str) -> str:
    """The answer a completion gives, exactly as evaluation reads it (ehrforge.answers.parse_response)."""
    return parse_response(text)[1]


def correctness(completions, answer, answer_type, **_) -> list[float]:
    """The shared verifier's score of each completion's final answer against the gold answer (0 when unscorable)."""
    out = []
    for comp, gold, kind in zip(completions, answer, answer_type):
        v = verify(final_answer(_text(comp)), gold, kind)
        out.append(float(v.score or 0.0))
    return out


def format_reward(completions, **_) -> list[float]:
    """0.5 for a final `Answer:` line, 0.5 more for reasoning before it (ehrforge.answers.format_score)."""
    return [format_score(_text(c)) for c in completions]


format_reward.__name__ = "format"  # the name TRL logs it under (rewards/format/mean)
REWARD_FUNCS = (correctness, format_reward)


# --------------------------------------------------------------------------------------------------- data


def snapshot(con, cfg, prepared: Path) -> tuple[dict, list[str]]:
    """Train-split prompts with their gold answers into `prepared/grpo_train.jsonl` (run once, in launch)."""
    import hashlib

    from ehrforge import warehouse
    from ehrforge.instructions import to_messages

    d = cfg.data
    warehouse.require_tables(con, [d.table, d.splits_table],
                             hint="build the warehouse and generate the instruction set first: `make synthesize`")
    params: list = [d.dataset, list(cfg.grpo.answer_types)]
    where = "i.dataset = ? and i.split = 'train' and i.answer_type in (select unnest(?::varchar[]))"
    if d.tasks:
        where += " and i.task in (select unnest(?::varchar[]))"
        params.append(list(d.tasks))
    df = con.execute(
        f"select i.instruction_id, i.task, i.subject_id, i.context, i.instruction, i.answer, i.answer_type, "
        f"s.split as patient_split from {d.table} i left join {d.splits_table} s on s.subject_id = i.subject_id "
        f"where {where} order by i.instruction_id", params).df()
    if df.empty:
        raise InputDataError(
            f"{d.table} has no train rows of dataset {d.dataset!r} with answer_type in {cfg.grpo.answer_types}"
            + (f" and task in {d.tasks}" if d.tasks else "") + ": GRPO needs prompts with verifiable answers. "
            "Set data.dataset / grpo.answer_types, or synthesize the dataset first")
    bad = df[df["patient_split"].isna() | (df["patient_split"] != "train")]
    if len(bad):
        r = bad.iloc[0]
        raise InputDataError(
            f"{len(bad)} train rows of {d.table} (dataset {d.dataset!r}) belong to patients that are not in the train "
            f"split of {d.splits_table} (e.g. {r['instruction_id']}, subject {r['subject_id']}: "
            f"{r['patient_split']!r}); GRPO prompts must come from train patients only: regenerate the dataset")
    # the prompt form SFT trained on and evaluation asks with (one system prompt), unless grpo.system_prompt is set
    system = cfg.grpo.system_prompt or d.system_prompt
    rows = []
    for r in df.to_dict("records"):
        gold = strip_thinking(r["answer"])[1]  # a reasoning row's gold answer is what follows its thinking
        rows.append({"instruction_id": r["instruction_id"], "task": r["task"], "subject_id": int(r["subject_id"]),
                     "prompt": to_messages(r, system, with_answer=False), "answer": gold,
                     "answer_type": r["answer_type"]})
    if d.max_train_examples:
        rows = rows[: d.max_train_examples]  # instruction ids are hashes: a fixed, unbiased sample
    with (prepared / PROMPTS_FILE).open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    version = hashlib.sha256(json.dumps([[r["instruction_id"], r["answer"]] for r in rows]).encode()).hexdigest()[:16]
    meta = {"grpo_data_version": version, "grpo_source": f"{d.table}[dataset={d.dataset}, split=train]",
            "grpo_counts": {"train": len(rows)}}
    return meta, [m["content"] for r in rows for m in r["prompt"]] + [r["answer"] for r in rows]


def _load_prompts(cfg, tokenizer, prepared: Path) -> tuple[list[dict], int]:
    """The prepared prompts that fit `grpo.max_prompt_tokens` (rendered with the chat template), and how many did not."""
    rows = [json.loads(line) for line in (prepared / PROMPTS_FILE).read_text().splitlines() if line.strip()]
    kept, dropped = [], 0
    for r in rows:
        ids = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        if len(ids) > cfg.grpo.max_prompt_tokens:
            dropped += 1
            continue
        kept.append({"prompt": r["prompt"], "answer": r["answer"], "answer_type": r["answer_type"]})
    if not kept:
        raise InputDataError(f"all {len(rows)} GRPO prompts are longer than grpo.max_prompt_tokens="
                             f"{cfg.grpo.max_prompt_tokens} tokens: raise it or synthesize shorter contexts")
    return kept, dropped


# --------------------------------------------------------------------------------------------------- train


def reward_curve(log_history: list[dict]) -> list[dict]:
    """Every numeric figure of every training log entry as (step, metric, value), once per step and metric."""
    rows, seen = [], set()
    for e in log_history:
        if "step" not in e or "train_runtime" in e:
            continue
        for k, v in e.items():
            if k in _NOT_CURVES or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if (int(e["step"]), k) not in seen:
                seen.add((int(e["step"]), k))
                rows.append({"step": int(e["step"]), "metric": k, "value": float(v)})
    return rows


def grpo_arguments(cfg, out_dir: Path, dtype):
    import torch
    from trl import GRPOConfig

    t, g = cfg.train, cfg.grpo
    return GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=g.prompts_per_step * g.num_generations,
        gradient_accumulation_steps=t.grad_accum,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_tokens,
        temperature=g.temperature,
        beta=g.beta,
        reward_weights=[g.correctness_weight, g.format_weight],
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        remove_unused_columns=False,
        log_completions=False,
        dataloader_num_workers=t.dataloader_num_workers,
        disable_tqdm=False,
    )


def run_stage(cfg, stage: str, base_path: str, run_dir: Path, callbacks: list | None = None) -> dict:
    """Train the grpo stage; saves `<run_dir>/grpo/final` (adapter + tokenizer) and `summary.json` (rank 0)."""
    import datasets
    import torch
    from transformers import AutoTokenizer, set_seed
    from trl import GRPOTrainer

    from training.data import ensure_chat_template
    from training.trainer import _dtype, _peak_memory, resolve_checkpoint, save_final

    prepared, out_dir = run_dir / "prepared", run_dir / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=cfg.model.trust_remote_code)
    ensure_chat_template(tokenizer, cfg.model.chat_template)
    prompts, n_dropped = _load_prompts(cfg, tokenizer, prepared)
    dtype = _dtype(cfg)
    set_seed(cfg.train.seed)
    model = prepare(base_path, cfg, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = GRPOTrainer(model=model, reward_funcs=list(REWARD_FUNCS), args=grpo_arguments(cfg, out_dir, dtype),
                          train_dataset=datasets.Dataset.from_list(prompts), processing_class=tokenizer,
                          callbacks=list(callbacks or []))
    ckpt = resolve_checkpoint(cfg, out_dir)
    if ckpt:
        log.info("resuming %s from %s", stage, ckpt)
    t_train = time.perf_counter()
    trainer.train(resume_from_checkpoint=ckpt)
    train_s = time.perf_counter() - t_train
    history = trainer.state.log_history
    losses = [{"step": int(e["step"]), "epoch": float(e.get("epoch") or 0.0), "split": "train",
               "loss": float(e["loss"]), "learning_rate": float(e.get("learning_rate") or 0.0)}
              for e in history if "loss" in e and "train_runtime" not in e]
    curve = reward_curve(history)
    rewards = [r["value"] for r in curve if r["metric"] == "reward"]
    n_tokens = max((r["value"] for r in curve if r["metric"] == "num_tokens"), default=0.0)
    final_dir = out_dir / "final"
    save_final(trainer, final_dir)
    peak_gb, peak_kind = _peak_memory()
    summary = {
        "stage": stage, "base_model_path": str(base_path),
        "n_train_examples": len(prompts), "n_val_examples": 0, "n_dropped": n_dropped,
        "n_train_tokens": None, "n_train_label_tokens": None, "packing": False, "n_packs": None,
        "n_params": int(n_params), "n_trainable_params": int(n_trainable),
        "gradient_checkpointing": False, "chunked_loss": False, "liger": False,
        "dtype": str(dtype).replace("torch.", ""),
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "steps": int(trainer.state.global_step), "epochs": float(trainer.state.epoch or 0.0), "resumed_from": ckpt,
        "first_train_loss": losses[0]["loss"] if losses else None,
        "final_train_loss": losses[-1]["loss"] if losses else None,
        "mean_train_loss": sum(r["loss"] for r in losses) / len(losses) if losses else None,
        "first_eval_loss": None, "final_eval_loss": None, "best_eval_loss": None,
        "real_tokens_trained": int(n_tokens),  # prompt + completion tokens TRL counted (num_tokens)
        "tokens_per_s": n_tokens / max(train_s, 1e-9),
        "peak_memory_gb": peak_gb, "peak_memory_kind": peak_kind,
        "wall_s": time.perf_counter() - t_start,
        "output_path": str(final_dir), "merged_path": None,
        "first_reward": rewards[0] if rewards else None, "final_reward": rewards[-1] if rewards else None,
        "loss_curve": losses, "reward_curve": curve,
    }
    if trainer.is_world_process_zero():
        from ehrforge.atomic import atomic_write_text

        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return summary


@register_recipe("grpo", is_adapter=True, default_distributed="ddp", supports_sharding=False, stage="grpo",
                 snapshot=snapshot, run_stage=run_stage,
                 description="GRPO (TRL) with verifiable rewards from the shared answer verifier, on LoRA adapters")
def prepare(model_path: str, cfg, dtype):
    from peft import get_peft_model

    from training.recipes.lora import lora_config

    model = load_base(model_path, cfg, dtype)
    return get_peft_model(model, lora_config(cfg))
