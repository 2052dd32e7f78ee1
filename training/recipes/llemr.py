"""LLemr: events enter the LLM as embeddings. A projector from [description vector ; time ; value features] to the
LLM's hidden size and LoRA on the LLM, trained together in one stage (as LLemr now does) by the trainer's
EhrTrainer, saved as ONE directory (adapter + projector + description vectors + llemr.json, ehrforge.llemr).

    make embed-events                                          # vectors of the event descriptions (once per warehouse)
    make train CONFIG=training/configs/smollm2/135m_llemr.yaml

The data are the train/val rows of the instruction set (`data.dataset`, tasks with a rendered record: template QA,
risk prediction, decision making) in their event form (ehrforge.llemr.event_form): the same instances, ids and
answers as the text form, the context replaced by one placeholder position per event. The snapshot (prepared/)
holds the conversations with their events and the description vectors, so workers never open the warehouse.
No mid-run checkpoints: a stopped run trains again from the start (the demo run takes minutes).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from training.recipes import load_base, register_recipe

log = logging.getLogger(__name__)

EVENT_TASKS = ("template_qa", "risk_prediction", "decision_making")


def _rows(con, cfg, splits=("train", "val")) -> list[dict]:
    from ehrforge import warehouse
    from ehrforge.errors import InputDataError

    d = cfg.data
    warehouse.require_tables(con, [d.table, d.splits_table], hint="generate the instruction set first: `make synthesize`")
    tasks = list(d.tasks or EVENT_TASKS)
    df = con.execute(
        f"select i.instruction_id, i.task, i.split, i.subject_id, i.context, i.instruction, i.answer, i.lineage, "
        f"s.split as patient_split from {d.table} i join {d.splits_table} s on s.subject_id = i.subject_id "
        "where i.dataset = ? and i.split in (select unnest(?::varchar[])) and i.task in (select unnest(?::varchar[])) "
        "order by i.instruction_id", [d.dataset, list(splits), tasks]).df()
    if df.empty:
        raise InputDataError(f"instruction set {d.dataset!r} has no {tasks} rows in {d.table} for splits {list(splits)}; "
                             "run `make synthesize` or set data.dataset / data.tasks")
    bad = df[df["patient_split"] != df["split"]]
    if len(bad):
        raise InputDataError(f"{len(bad)} instruction rows disagree with their patient's split in {d.splits_table} "
                             f"(e.g. {bad.iloc[0]['instruction_id']}); the instruction set is stale: regenerate it")
    return df.drop(columns="patient_split").to_dict("records")


def snapshot(con, cfg, prepared: Path) -> tuple[dict, list[str]]:
    """Event-form conversations of the train/val rows + the encoder's description vectors, into `prepared/`."""
    import hashlib

    import numpy as np

    from ehrforge.event_embeddings import load_vectors
    from ehrforge.llemr import event_form, event_messages

    rows = _rows(con, cfg)
    forms = event_form(con, rows, cfg.llemr)
    index, vectors = load_vectors(con, cfg.llemr.encoder)
    counts, texts = {}, []
    digest = hashlib.sha256()
    for split in ("train", "val"):
        limit = cfg.data.max_train_examples if split == "train" else cfg.data.max_val_examples
        chosen = [r for r in rows if r["split"] == split][:limit]
        with (prepared / f"llemr_{split}.jsonl").open("w") as f:
            for r in chosen:
                msgs = event_messages(r, forms[r["instruction_id"]], cfg.data.system_prompt)
                rec = {"instruction_id": r["instruction_id"], "task": r["task"], "messages": msgs}
                f.write(json.dumps(rec) + "\n")
                digest.update(json.dumps(rec, sort_keys=True).encode())
                if split == "train":
                    texts += [m["content"] for m in msgs]
        counts[split] = len(chosen)
    used = {d for f in forms.values() for d in f["events"]["description_ids"]}
    missing = used - set(index)
    if missing:
        from ehrforge.errors import InputDataError

        raise InputDataError(f"{len(missing)} event descriptions of these records have no {cfg.llemr.encoder!r} vector "
                             f"in embeddings.event_descriptions: run `make embed-events` (python -m "
                             f"ehrforge.event_embeddings --encoder {cfg.llemr.encoder}) and train again")
    np.save(prepared / "event_vectors.npy", vectors)
    (prepared / "event_vector_ids.json").write_text(json.dumps(sorted(index, key=index.get)))
    meta = {"llemr_counts": counts, "sft_counts": counts, "sft_data_version": digest.hexdigest()[:16],
            "sft_source": f"{cfg.data.table}[dataset={cfg.data.dataset}] event form",
            "llemr_n_descriptions": len(index), "llemr_embedding_dim": int(vectors.shape[1])}
    return meta, texts


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.open() if line.strip()]


def examples(tokenizer, records: list[dict], index: dict, max_len: int, encoder: str = ""):
    """Tokenized event-form examples ({input_ids, event_mask, labels, event_rows, extras}: per event the row of its
    description vector and its time / value features) and how many were longer than `max_len`."""
    from ehrforge.llemr import encode, event_rows_and_extras, events_of

    out, dropped = [], 0
    for r in records:
        rows, extras = event_rows_and_extras(events_of(r["messages"]), index, encoder)
        ids, mask, labels = encode(tokenizer, r["messages"], len(rows), with_answer=True)
        if len(ids) > max_len:
            dropped += 1
            continue
        out.append({"input_ids": ids, "event_mask": mask, "labels": labels, "event_rows": rows, "extras": extras})
    return out, dropped


class EventCollator:
    """Right-padded batch + the events' features ([vector ; time ; value]) in the order of their placeholder
    positions (row-major), gathered from the description vectors here, per batch."""

    def __init__(self, pad_id: int, vectors):
        self.pad_id = pad_id
        self.vectors = vectors

    def __call__(self, batch: list[dict]) -> dict:
        import numpy as np
        import torch

        width = max(len(e["input_ids"]) for e in batch)

        def pad(key, value):
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in batch])

        feats = [np.concatenate([self.vectors[e["event_rows"]], e["extras"]], axis=1) for e in batch
                 if len(e["event_rows"])]
        dim = self.vectors.shape[1] + batch[0]["extras"].shape[1]
        return {
            "input_ids": pad("input_ids", self.pad_id),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in batch]),
            "event_mask": pad("event_mask", 0),
            "labels": pad("labels", -100),
            "event_features": torch.from_numpy(np.concatenate(feats).astype(np.float32)) if feats
            else torch.zeros((0, dim)),
            "n_real_tokens": torch.tensor(sum(len(e["input_ids"]) for e in batch)),
        }


def build_model(cfg, base_path: str, in_dim: int, dtype):
    from peft import get_peft_model

    from ehrforge.llemr import LlemrModel
    from training.recipes.lora import lora_config

    llm = load_base(base_path, cfg, dtype)
    llm.config.use_cache = False
    return LlemrModel(get_peft_model(llm, lora_config(cfg)), in_dim, cfg.llemr.projector)


def run_stage(cfg, stage: str, base_path: str, run_dir: Path, callbacks: list | None = None) -> dict:
    """Train projector + LoRA in one stage; saves `<run_dir>/sft/final` (the one LLemr artifact) and summary.json."""
    import dataclasses

    import numpy as np
    from transformers import AutoTokenizer, set_seed

    from ehrforge.atomic import atomic_dir, atomic_write_text
    from ehrforge.errors import InputDataError
    from ehrforge.llemr import feature_dim
    from training.data import ListDataset, ensure_chat_template
    from training.trainer import (_dtype, _make_trainer_class, _peak_memory, loss_curve, mean_logged_loss,
                                  training_arguments)

    prepared, out_dir = run_dir / "prepared", run_dir / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=cfg.model.trust_remote_code)
    ensure_chat_template(tokenizer, cfg.model.chat_template)
    vectors = np.load(prepared / "event_vectors.npy")
    index = {d: i for i, d in enumerate(json.loads((prepared / "event_vector_ids.json").read_text()))}
    enc = cfg.llemr.encoder
    train, dropped_train = examples(tokenizer, _read(prepared / "llemr_train.jsonl"), index, cfg.data.max_seq_len, enc)
    val, dropped_val = examples(tokenizer, _read(prepared / "llemr_val.jsonl"), index, cfg.data.max_seq_len, enc)
    if not train:
        raise InputDataError(f"no llemr training examples left: all {dropped_train} are longer than data.max_seq_len "
                             f"({cfg.data.max_seq_len}); raise it or lower llemr.max_events")
    dtype = _dtype(cfg)
    set_seed(cfg.train.seed)
    model = build_model(cfg, base_path, feature_dim(vectors.shape[1]), dtype)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args = training_arguments(cfg, stage, out_dir, False, False, dtype)
    args = dataclasses.replace(args, save_strategy="no", load_best_model_at_end=False, metric_for_best_model=None,
                               greater_is_better=None, per_device_train_batch_size=cfg.train.per_device_batch_size,
                               per_device_eval_batch_size=cfg.train.per_device_batch_size,
                               eval_strategy="steps" if (val and cfg.train.eval_steps) else "no",
                               train_sampling_strategy="random")
    trainer = _make_trainer_class()(
        model=model, args=args, train_dataset=ListDataset(train), eval_dataset=ListDataset(val) if val else None,
        data_collator=EventCollator(tokenizer.pad_token_id, vectors), processing_class=tokenizer,
        callbacks=list(callbacks or []), chunked_loss=cfg.speed.chunked_loss,
        loss_chunk_tokens=cfg.speed.loss_chunk_tokens)
    trainer.t_train_start = time.perf_counter()
    trainer.train()
    busy = max(trainer.busy_seconds(), 1e-9)
    final_eval = trainer.evaluate() if val else {}
    curve = loss_curve(trainer.state.log_history)
    final_dir = out_dir / "final"
    with atomic_dir(final_dir, {"artifact": "llemr_model", "step": int(trainer.state.global_step)}) as tmp:
        model.save_artifact(tmp, tokenizer, cfg.llemr, index, vectors, base_path)
    peak_gb, peak_kind = _peak_memory()
    evals = [r["loss"] for r in curve if r["split"] == "val"]
    trains = [r["loss"] for r in curve if r["split"] == "train"]
    summary = {
        "stage": stage, "base_model_path": str(base_path),
        "n_train_examples": len(train), "n_val_examples": len(val), "n_dropped": dropped_train + dropped_val,
        "n_train_tokens": sum(len(e["input_ids"]) for e in train),
        "n_train_label_tokens": sum(sum(1 for t in e["labels"] if t != -100) for e in train),
        "n_train_events": sum(len(e["event_rows"]) for e in train),
        "packing": False, "n_packs": None,
        "n_params": int(n_params), "n_trainable_params": int(n_trainable),
        "gradient_checkpointing": False, "chunked_loss": cfg.speed.chunked_loss, "liger": False,
        "dtype": str(dtype).replace("torch.", ""), "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "steps": int(trainer.state.global_step), "epochs": float(trainer.state.epoch or 0.0), "resumed_from": None,
        "first_train_loss": trains[0] if trains else None, "final_train_loss": trains[-1] if trains else None,
        "mean_train_loss": mean_logged_loss(curve),
        "first_eval_loss": evals[0] if evals else None, "final_eval_loss": final_eval.get("eval_loss"),
        "best_eval_loss": min(evals) if evals else final_eval.get("eval_loss"),
        "real_tokens_trained": int(trainer.n_real_tokens), "tokens_per_s": trainer.n_real_tokens / busy,
        "peak_memory_gb": peak_gb, "peak_memory_kind": peak_kind, "wall_s": time.perf_counter() - t_start,
        "output_path": str(final_dir), "merged_path": None, "loss_curve": curve,
    }
    if trainer.is_world_process_zero():
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


@register_recipe("llemr", is_adapter=True, default_distributed="ddp", supports_sharding=False, stage="sft",
                 snapshot=snapshot, run_stage=run_stage,
                 description="LLemr: event embeddings through a projector into the LLM, with LoRA (one stage)")
def prepare(model_path: str, cfg, dtype):
    raise NotImplementedError("the llemr recipe trains through its own run_stage (projector + LoRA)")
