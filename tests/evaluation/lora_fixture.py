"""A real (tiny) LoRA fine-tune for the evaluation tests: a few optimizer steps on the train split of the fixture
instruction set, answer-only loss, saved with peft, and recorded in `training.runs` the way `make train` records
its runs (the columns evaluation reads), so `training_run_id` lookups are exercised without the training branch."""

from __future__ import annotations

from pathlib import Path


def train_tiny_lora(con, base_path: str, out_dir: Path, dataset: str, steps: int = 30, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.data import to_messages

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
    rows = con.execute(
        "select instruction_id, context, instruction, answer from synthesis.instructions "
        "where dataset = ? and split = 'train' order by instruction_id limit 64", [dataset]).df().to_dict("records")
    examples = []
    for r in rows:
        prompt = tok.apply_chat_template(to_messages(r), add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"][-256:]
        a_ids = tok(str(r["answer"]) + "<|im_end|>", add_special_tokens=False)["input_ids"][:64]
        examples.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for step in range(steps):
        batch = [examples[(step * 4 + i) % len(examples)] for i in range(4)]
        width = max(len(x) for x, _ in batch)
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def record_training_run(con, run_id: str, name: str, base_path: str, adapter_path: str, method: str = "lora",
                        merged_path: str | None = None) -> None:
    import json

    import pandas as pd

    from ehrforge import warehouse

    run = warehouse.start_run(con, job="train", config={"name": name, "fixture": True}, run_id=run_id)
    df = pd.DataFrame([{
        "stage": "sft", "method": method, "base_model": "tiny://", "base_model_path": base_path,
        "output_path": adapter_path, "merged_path": merged_path, "config_json": json.dumps({"name": name}),
    }]).astype({"merged_path": "object"})
    warehouse.write_table(con, "training.runs", df, run)
    warehouse.finish_run(con, run)
