"""Packing must not change what the model sees: per-example losses equal those of unpacked batches."""

import json

import pytest
import torch

from training.data import PackedCollator, PaddedCollator, ensure_chat_template, to_messages, tokenize_chat
from training.trainer import chunked_causal_lm_loss_sum


def _examples(tok, n=6):
    from ehrforge import warehouse

    with warehouse.session(read_only=True) as con:
        rows = con.execute(
            "select instruction_id, context, instruction, answer from synthesis.instructions "
            "where split='train' order by instruction_id limit ?", [n]).df().to_dict("records")
    # vary the lengths so that documents start at different offsets
    rows = [{**r, "context": r["context"][: 40 + 25 * i]} for i, r in enumerate(rows)]
    return [tokenize_chat(tok, to_messages(r)) for r in rows]


def _per_token_loss(logits, labels):
    lp = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), labels[:, 1:], reduction="none", ignore_index=-100)
    return lp


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked(train_env, tiny_model_dir, attn):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_chat_template(tok, None)
    exs = _examples(tok)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn).eval()
    with torch.no_grad():
        alone = []
        for e in exs:
            b = PaddedCollator(tok.pad_token_id)([e])
            alone.append(_per_token_loss(model(input_ids=b["input_ids"], use_cache=False).logits, b["labels"]).sum())
        padded = PaddedCollator(tok.pad_token_id)(exs)
        lp = _per_token_loss(model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                                   use_cache=False).logits, padded["labels"]).sum(1)
        packed = PackedCollator(tok.pad_token_id)(exs)
        tok_loss = _per_token_loss(model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                                         use_cache=False).logits, packed["labels"])[0]
    # split the packed per-token losses back into documents
    per_doc, start = [], 0
    for e in exs:
        n = len(e["input_ids"])
        per_doc.append(tok_loss[start : start + n - 1].sum())
        start += n
    alone = torch.stack(alone)
    assert torch.allclose(torch.stack(per_doc), alone, atol=1e-4, rtol=1e-4)
    assert torch.allclose(lp, alone, atol=1e-4, rtol=1e-4)


def test_chunked_loss_matches_model_loss(train_env, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_chat_template(tok, None)
    exs = _examples(tok)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    b = PackedCollator(tok.pad_token_id)(exs)
    ref = model(input_ids=b["input_ids"], position_ids=b["position_ids"], labels=b["labels"], use_cache=False).loss
    ref.backward()
    g_ref = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    out = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False,
                output_hidden_states=True, logits_to_keep=1)
    s, n = chunked_causal_lm_loss_sum(out.hidden_states[-1], model.lm_head, b["labels"], chunk_tokens=3)
    (s / n).backward()
    assert torch.allclose(s / n, ref, atol=1e-5)
    assert torch.allclose(model.model.layers[0].self_attn.q_proj.weight.grad, g_ref, atol=1e-6)


def test_chunked_loss_takes_float32_hidden_states_into_a_bf16_head():
    """Under bf16 mixed precision accelerate hands back the model's outputs in float32 while a bf16-loaded head
    keeps bf16 weights (this failed the first GPU run): the loss casts to the head's dtype and still has gradients."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 40, bias=False).to(torch.bfloat16)
    hidden = torch.randn(2, 9, 16, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 40, (2, 9))
    labels[:, :3] = -100
    want, n_want = chunked_causal_lm_loss_sum(hidden, head, labels, chunk_tokens=4)
    got, n = chunked_causal_lm_loss_sum(hidden.float(), head, labels, chunk_tokens=4)
    got.backward()
    assert n == n_want == 12
    assert torch.allclose(got, want)
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()
