"""LLemr's event form vs the text form over the same records: context length, training speed, encoder throughput, and
the longest record each form holds in a token budget.

    python bench/bench_llemr.py                                    # = make bench-llemr (tiny model, CPU)
    python bench/bench_llemr.py --model smollm2-135m-instruct --records 32 --steps 4

Needs a warehouse with the demo instruction set (`make synthesize`) and the description vectors (`make
embed-events`). Figures:
  context    per record (train rows of template QA / risk / decision), the context of its window rendered as text
             without a budget (every event of the config's event types, chart items unfiltered) vs the same events as
             placeholders: tokens vs positions, the model's tokenizer.
  budget     for each budget B, the most events of one admission's whole stay the text form fits in B tokens
             (render_events, newest first) vs the event form (B minus the header), and how many of the cohort's
             stays fit whole in B in each form.
  training   the same records as trained: the text form as synthesized (its context cut to the synthesis budget) and
             the event form (llemr.max_events most recent events), LoRA (+ projector) forward+backward at the same
             batch size: positions/s and records/s.
  encoder    all-MiniLM-L6-v2 over the warehouse's event descriptions: descriptions/s (batch 64, CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EVENT_TYPES = ["lab", "chart", "medication_administration", "microbiology", "procedure_icd", "transfer", "discharge"]


def _model(name: str, con) -> str:
    from ehrforge.models import TINY_PREFIX, resolve_model_path
    from ehrforge.tiny_model import warehouse_texts

    if name == "tiny":
        return resolve_model_path(TINY_PREFIX, tiny_texts=warehouse_texts(con, limit=200), tiny_prefix="tiny-bench")
    return resolve_model_path(name)


def _rows(con, dataset: str, n: int) -> list[dict]:
    from training.recipes.llemr import EVENT_TASKS

    df = con.execute(
        "select instruction_id, task, split, subject_id, hadm_id, context, instruction, answer, lineage from "
        "synthesis.instructions where dataset = ? and split = 'train' and task in (select unnest(?::varchar[])) "
        "order by hash(instruction_id), instruction_id limit ?", [dataset, list(EVENT_TASKS), n]).df()
    if df.empty:
        raise SystemExit(f"no train rows of {list(EVENT_TASKS)} in dataset {dataset!r}: run `make synthesize`")
    return df.to_dict("records")


def context_figures(con, rows, tok, spec) -> dict:
    """Full-window text tokens vs event positions, same events."""
    from ehrforge import llemr
    from synthesis.config import load_synthesis_config
    from synthesis.context import BuildContext

    cfg = load_synthesis_config("synthesis/configs/demo.yaml", ["render.chart_itemids=null", "progress=false",
                                                                  f"render.event_types={json.dumps(spec.event_types)}",
                                                                  "render.tokenizer=null"])
    ctx = BuildContext(con=con, cfg=cfg).load()
    ctx.count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    forms = llemr.event_form(con, rows, spec.model_copy(update={"max_events": 10**9}))  # every event, as the text
    text_tokens, positions, n_events = [], [], []
    for r in rows:
        lin = json.loads(r["lineage"])
        excl = ("diagnosis",) if lin.get("target") == "diagnosis" else ()
        from synthesis.render import render_events

        ev = ctx.events(int(lin["hadm_id"]))
        if excl:
            ev = ev[~ev["event_type"].isin(list(excl))]
        rendered = render_events(ctx.admission(int(lin["hadm_id"])), ev, lin["context"]["window_start"],
                                 lin["context"]["window_end"], max_tokens=10**9, count_tokens=ctx.count_tokens)
        f = forms[r["instruction_id"]]
        head = ctx.count_tokens(f["context"].replace(llemr.EVENTS_MARKER, ""))
        text_tokens.append(rendered.n_tokens)
        positions.append(head + len(f["events"]["description_ids"]))
        n_events.append(rendered.n_events)
    return {"n_records": len(rows), "events_mean": statistics.mean(n_events), "events_max": max(n_events),
            "text_tokens_mean": statistics.mean(text_tokens), "text_tokens_median": statistics.median(text_tokens),
            "text_tokens_max": max(text_tokens), "event_positions_mean": statistics.mean(positions),
            "event_positions_max": max(positions),
            "text_tokens_per_event": sum(text_tokens) / max(sum(n_events), 1),
            "ratio_mean": statistics.mean(text_tokens) / max(statistics.mean(positions), 1e-9)}, ctx


def header_tokens(ctx) -> int:
    """Positions the event form spends besides its events: the longest record header + the events line."""
    import pandas as pd

    from synthesis.render import header

    return max(ctx.count_tokens(header(adm, pd.Timestamp(adm["admittime"]), pd.Timestamp(adm["dischtime"]), True)
                                + "\n\nEvents of this window, oldest first, one embedding each (0000):\n")
               for adm in ctx._adm_index.values())


def budget_figures(ctx, budgets: list[int], header_tokens: int) -> list[dict]:
    """Longest stay (events) each form holds in B tokens, and how many whole stays fit."""
    import pandas as pd

    from synthesis.render import render_events

    stays = []
    for hadm, adm in ctx._adm_index.items():
        ev = ctx.events(hadm)
        start = pd.Timestamp(adm["admittime"]).floor("min")
        end = pd.Timestamp(adm["dischtime"]).ceil("min") + pd.Timedelta(minutes=1)
        stays.append((hadm, adm, ev, start, end, int(((ev["event_time"] >= start) & (ev["event_time"] < end)).sum())))
    out = []
    for b in budgets:
        text_best, text_whole, ev_whole = 0, 0, 0
        for hadm, adm, ev, start, end, n in stays:
            r = render_events(adm, ev, start, end, max_tokens=b, count_tokens=ctx.count_tokens)
            text_best = max(text_best, r.n_events_shown)
            text_whole += int(not r.truncated)
            ev_whole += int(n <= b - header_tokens)
        out.append({"budget": b, "text_most_events": text_best, "event_most_events": b - header_tokens,
                    "text_whole_stays": text_whole, "event_whole_stays": ev_whole, "n_stays": len(stays)})
    return out


def training_figures(con, rows, base: str, spec, steps: int, batch: int, index, vectors) -> dict:
    import torch

    from ehrforge import llemr
    from ehrforge.instructions import to_messages
    from training.config import TrainConfig
    from training.data import PaddedCollator, ensure_chat_template, tokenize_chat
    from training.recipes import load_base
    from training.recipes.llemr import EventCollator, build_model, examples
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    ensure_chat_template(tok, None)
    cfg = TrainConfig.model_validate({"method": "llemr", "model": {"base": base}, "llemr": spec.model_dump(),
                                      "lora": {"modules_to_save": []}, "speed": {"packing": False}})
    forms = llemr.event_form(con, rows, spec)
    text = [tokenize_chat(tok, to_messages(r)) for r in rows]
    ev, _ = examples(tok, [{"messages": llemr.event_messages(r, forms[r["instruction_id"]])} for r in rows], index,
                     10**9)

    def run(model, batches) -> tuple[float, int]:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()
        n_pos = 0
        model(**{k: v for k, v in batches[0].items() if k != "n_real_tokens"}).loss.backward()  # warm-up
        opt.zero_grad()
        t0 = time.perf_counter()
        for b in batches[:steps]:
            n_pos += int(b.pop("n_real_tokens"))
            model(**b).loss.backward()
            opt.step()
            opt.zero_grad()
        return time.perf_counter() - t0, n_pos

    from peft import get_peft_model

    from training.recipes.lora import lora_config

    torch.manual_seed(0)
    text_model = get_peft_model(load_base(base, cfg, torch.float32), lora_config(cfg))
    col = PaddedCollator(tok.pad_token_id)
    t_text, pos_text = run(text_model, [col(text[i:i + batch]) for i in range(0, len(text), batch)])
    del text_model
    ev_model = build_model(cfg, base, llemr.feature_dim(vectors.shape[1]), torch.float32)
    ecol = EventCollator(tok.pad_token_id, vectors)
    t_ev, pos_ev = run(ev_model, [ecol(ev[i:i + batch]) for i in range(0, len(ev), batch)])
    n_rec = min(steps, -(-len(rows) // batch)) * batch
    return {"batch": batch, "steps": steps, "text_positions_per_s": pos_text / t_text,
            "event_positions_per_s": pos_ev / t_ev, "text_records_per_s": n_rec / t_text,
            "event_records_per_s": n_rec / t_ev, "text_positions_mean": statistics.mean(len(e["input_ids"]) for e in text),
            "event_positions_mean": statistics.mean(len(e["input_ids"]) for e in ev)}


def encoder_figures(con, n: int) -> dict:
    from ehrforge.event_embeddings import Encoder

    texts = [r[0] for r in con.execute("select description from marts.dim_event_descriptions order by description_id "
                                       "limit ?", [n]).fetchall()]
    enc = Encoder("minilm-l6-v2")
    enc.encode(texts[:64])  # warm-up
    t0 = time.perf_counter()
    enc.encode(texts)
    dt = time.perf_counter() - t0
    return {"encoder": "minilm-l6-v2", "n": len(texts), "descriptions_per_s": len(texts) / dt, "dim": enc.dim}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny (built from warehouse text) or a model name / dir")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-events", type=int, default=512)
    parser.add_argument("--budgets", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--encoder-n", type=int, default=1024)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    from transformers import AutoTokenizer

    from ehrforge import llemr, warehouse
    from ehrforge.event_embeddings import load_vectors

    spec = llemr.LlemrSpec(event_types=EVENT_TYPES, max_events=args.max_events)
    with warehouse.session(read_only=True) as con:
        base = _model(args.model, con)
        tok = AutoTokenizer.from_pretrained(base)
        rows = _rows(con, args.dataset, args.records)
        index, vectors = load_vectors(con, spec.encoder)
        ctxf, ctx = context_figures(con, rows, tok, spec)
        header = header_tokens(ctx)
        budgets = budget_figures(ctx, args.budgets, header)
        train = training_figures(con, rows, base, spec, args.steps, args.batch, index, vectors)
        enc = encoder_figures(con, args.encoder_n)
    figures = {"model": args.model, "context": ctxf, "budget": budgets, "training": train, "encoder": enc}
    print(f"model {args.model}; {ctxf['n_records']} train records (template QA / risk / decision), event types "
          f"{', '.join(EVENT_TYPES)}")
    print(f"context, whole window: text {ctxf['text_tokens_mean']:.0f} tokens mean (median "
          f"{ctxf['text_tokens_median']:.0f}, max {ctxf['text_tokens_max']}), {ctxf['text_tokens_per_event']:.1f} "
          f"tokens/event; the same events as embeddings {ctxf['event_positions_mean']:.0f} positions mean (max "
          f"{ctxf['event_positions_max']}): {ctxf['ratio_mean']:.1f}x shorter")
    for b in budgets:
        print(f"budget {b['budget']:>5}: longest stay held: text {b['text_most_events']:>5} events, event form "
              f"{b['event_most_events']:>5}; whole stays that fit: text {b['text_whole_stays']}/{b['n_stays']}, "
              f"event form {b['event_whole_stays']}/{b['n_stays']}")
    print(f"training records: the text form as synthesized, the event form with its {args.max_events} most recent "
          "events")
    print(f"training (batch {train['batch']}, {train['steps']} steps, LoRA, + projector for events): text "
          f"{train['text_positions_per_s']:.0f} positions/s = {train['text_records_per_s']:.2f} records/s "
          f"({train['text_positions_mean']:.0f} positions/record); events {train['event_positions_per_s']:.0f} "
          f"positions/s = {train['event_records_per_s']:.2f} records/s ({train['event_positions_mean']:.0f} "
          f"positions/record)")
    print(f"encoder {enc['encoder']}: {enc['descriptions_per_s']:.0f} descriptions/s over {enc['n']} (dim {enc['dim']})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
