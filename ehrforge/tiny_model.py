"""Build a tiny causal LM offline: a byte-level BPE tokenizer trained on warehouse text + a small Llama.

Tests and `make demo` cannot download models, so they build one here. Real users name a hub id or a local
path instead. The result is an ordinary transformers model directory (config, weights, tokenizer with a
chat template) that every backend (transformers, `transformers serve`, vLLM) loads the same way.

    python -m ehrforge.tiny_model --out runs/tiny-llama        # text from the warehouse notes/events
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterable

from ehrforge.instructions import CHAT_TEMPLATES

log = logging.getLogger(__name__)

# ChatML, whose assistant turn sits in {% generation %} so answer tokens can be masked for the loss.
CHAT_TEMPLATE = CHAT_TEMPLATES["chatml"]
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str],
    vocab_size: int = 2048,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on `texts`, build a random-init Llama of the given shape, save both to `out_dir`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("tiny model (%d params) written to %s", sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir


def cached_tiny_model(texts: list[str], prefix: str = "tiny", root: str | Path | None = None, **shape) -> Path:
    """`build_tiny_model` once per (texts, shape): reused from `<runs>/tiny/<prefix>-<hash>` when already built."""
    import hashlib
    import json

    from ehrforge.paths import runs_dir

    digest = hashlib.sha256(json.dumps([shape, texts], sort_keys=True).encode()).hexdigest()[:12]
    out = Path(root or runs_dir()) / "tiny" / f"{prefix}-{digest}"
    if not (out / "config.json").exists():
        build_tiny_model(out, texts, **shape)
    return out


def warehouse_texts(con, limit: int = 2000) -> list[str]:
    """Text to train the tokenizer on: note text and event labels/values from the marts."""
    texts: list[str] = []
    from ehrforge.warehouse import table_exists

    if table_exists(con, "marts.fct_notes"):
        texts += [r[0] for r in con.execute(
            "select clean_text from marts.fct_notes where clean_text is not null order by note_id limit ?", [limit]
        ).fetchall()]
    texts += [r[0] for r in con.execute(
        "select concat_ws(' ', event_type, item_label, value_text, unit) from marts.fct_events "
        "order by event_id limit ?", [limit * 20]
    ).fetchall()]
    return texts


def main(argv: list[str] | None = None) -> None:
    from ehrforge import warehouse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args(argv)
    with warehouse.session(read_only=True) as con:
        warehouse.require_tables(con, ["marts.fct_events"])
        texts = warehouse_texts(con)
    path = build_tiny_model(args.out, texts, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                            num_layers=args.layers)
    print(f"tiny model written to {path}")


if __name__ == "__main__":
    main()
