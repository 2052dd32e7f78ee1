"""LLemr's model: events enter the LLM as embeddings, not as rendered text. Shared by training and evaluation.

    from ehrforge import llemr
    forms = llemr.event_form(con, rows, spec)               # same instruction rows, context = event placeholders
    model = llemr.LlemrModel(llm, in_dim, hidden)            # projector [embedding ; time ; value] -> hidden size
    model.save_artifact(dir, tokenizer, spec, vectors)       # ONE directory: adapter + projector + vectors + config
    model, tok, spec, vectors = llemr.load_artifact(dir)     # the same outputs again

The event form of an instruction row is built from the row's own lineage (its admission and the context window of
the text form, `lineage.context.window_start/window_end`), so the two forms are the same task instances with the
same instruction ids, questions and answers; only the context differs. The user message keeps the text form's
header (patient, admission, window) and replaces the rendered events by the marker `<events/>`, and carries the
events as `message["events"]` = {description_ids, hours, values}: per event, its description id
(marts.fct_event_features -> embeddings.event_descriptions), hours since admission and the item-normalised value.
At tokenization the marker becomes one placeholder position per event, whose input embedding is the projection of
[description vector ; time features ; value features]. The most recent `max_events` events of the window are kept
(the text form keeps what fits its token budget); a decision-making row about diagnoses leaves out diagnosis events,
as its text form does.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ehrforge.errors import ConfigError, InputDataError

log = logging.getLogger(__name__)

FEATURES = "marts.fct_event_features"
EVENTS_MARKER = "<events/>"
ARTIFACT_FILE = "llemr.json"
PROJECTOR_FILE = "projector.safetensors"
VECTORS_FILE = "event_vectors.safetensors"
N_TIME_FEATURES = 2   # log1p(hours) / log1p(720), hours / 240
N_VALUE_FEATURES = 2  # normalised value (0 when none), has a value
FORM_VERSION = "1"
DEFAULT_EVENT_TYPES = ["lab", "chart", "medication_administration", "microbiology", "procedure_icd", "transfer",
                       "discharge"]
TRUNCATED_NOTE = " (earlier events omitted to fit the length limit)"


class LlemrSpec(BaseModel):
    """How records become event sequences and how they enter the LLM (`llemr:` in a training config)."""

    model_config = ConfigDict(extra="forbid")
    encoder: str = Field("minilm-l6-v2", description="the encoder whose vectors are read from "
                         "embeddings.event_descriptions: minilm-l6-v2, or the name given to `make embed-events "
                         "ARGS=--encoder ...` (a BiomedBERT directory or hub id)")
    event_types: list[str] = Field(default_factory=lambda: list(DEFAULT_EVENT_TYPES),
                                   description="event types in the sequence (the text form's render.event_types)")
    max_events: int = Field(512, ge=1, description="most recent events of the window kept per record")
    projector: str = Field("mlp", pattern="^(linear|mlp)$", description="linear, or mlp (linear-GELU-linear)")

    def form_key(self) -> dict:
        return {"event_types": sorted(self.event_types), "max_events": self.max_events, "form": FORM_VERSION}


# ------------------------------------------------------------------------------------------- the event form


def _window(row: dict) -> tuple[int, str, str, list[str]]:
    try:
        lin = json.loads(row["lineage"]) if isinstance(row.get("lineage"), str) else row["lineage"]
        ctx = lin["context"]
        excluded = ["diagnosis"] if lin.get("target") == "diagnosis" else []
        return int(lin["hadm_id"]), ctx["window_start"], ctx["window_end"], excluded
    except (KeyError, TypeError, ValueError):
        raise InputDataError(
            f"instruction {row.get('instruction_id')!r} (task {row.get('task')!r}) has no admission context window in "
            "its lineage (hadm_id, context.window_start/window_end): only tasks whose context is a rendered record "
            "(template_qa, risk_prediction, decision_making) have an event form; restrict data.tasks to them"
        ) from None


def _header(context: str, truncated: bool) -> str:
    head = (context or "").split("\n\n", 1)[0].replace(TRUNCATED_NOTE, "")
    if truncated:
        head = head.rstrip() + TRUNCATED_NOTE
    return head


def event_form(con, rows: list[dict], spec: LlemrSpec) -> dict[str, dict]:
    """{instruction_id: {"context", "events": {description_ids, hours, values}, "n_events_window"}} for `rows`
    (each with instruction_id, task, lineage, context), from marts.fct_event_features in one query."""
    import pandas as pd

    from ehrforge import warehouse

    warehouse.require_tables(con, [FEATURES], hint="rebuild the warehouse (`make build`): it adds the LLemr marts")
    keys = []
    for r in rows:
        hadm, start, end, excluded = _window(r)
        keys.append({"instruction_id": r["instruction_id"], "hadm_id": hadm, "w_start": pd.Timestamp(start),
                     "w_end": pd.Timestamp(end), "excluded": excluded})
    frame = pd.DataFrame(keys, columns=["instruction_id", "hadm_id", "w_start", "w_end", "excluded"])
    con.register("_llemr_keys", frame)
    try:
        ev = con.execute(
            f"""select k.instruction_id, f.description_id, f.hours_since_admit, f.value_norm,
                       count(*) over (partition by k.instruction_id) as n_window
                from _llemr_keys k join {FEATURES} f
                  on f.hadm_id = k.hadm_id and f.event_time >= k.w_start and f.event_time < k.w_end
                where f.event_type in (select unnest(?::varchar[])) and not list_contains(k.excluded, f.event_type)
                qualify row_number() over (partition by k.instruction_id
                                           order by f.event_time desc, f.event_type desc, f.description_id desc,
                                                    f.event_id desc) <= ?
                order by k.instruction_id, f.event_time, f.event_type, f.description_id, f.event_id""",
            [list(spec.event_types), spec.max_events]).df()
    finally:
        con.unregister("_llemr_keys")
    by_id: dict[str, Any] = {i: g for i, g in ev.groupby("instruction_id", sort=False)}
    out = {}
    for r in rows:
        g = by_id.get(r["instruction_id"])
        n_window = 0 if g is None else int(g["n_window"].iloc[0])
        events = {"description_ids": [] if g is None else g["description_id"].tolist(),
                  "hours": [] if g is None else [float(h) for h in g["hours_since_admit"]],
                  "values": [] if g is None else [None if pd.isna(v) else float(v) for v in g["value_norm"]]}
        n = len(events["description_ids"])
        body = (f"Events of this window, oldest first, one embedding each ({n}):\n{EVENTS_MARKER}" if n
                else "(no events in this window)")
        out[r["instruction_id"]] = {"context": _header(r.get("context") or "", n_window > n) + "\n\n" + body,
                                    "events": events, "n_events_window": n_window}
    return out


def event_messages(row: dict, form: dict, system_prompt: str | None = None, with_answer: bool = True) -> list[dict]:
    """The chat messages of a row in the event form: the text form's messages with the event context, and the events
    attached to the user message (`message["events"]`)."""
    from ehrforge.instructions import to_messages

    msgs = to_messages({**row, "context": form["context"]}, system_prompt, with_answer=with_answer)
    for m in msgs:
        if m["role"] == "user":
            m["events"] = form["events"]
    return msgs


def events_of(messages: list[dict]) -> dict | None:
    for m in messages:
        if m.get("events") is not None:
            return m["events"]
    return None


def is_event_form(messages: list[dict]) -> bool:
    return events_of(messages) is not None


# ---------------------------------------------------------------------------------------------- features


def event_rows_and_extras(events: dict, index: dict[str, int], spec_encoder: str = ""):
    """(row of each event's description vector, (n_events, 4) float32 [time features ; value features]). Kept apart
    so a training set holds one index per event, not a copy of its vector."""
    import numpy as np

    ids = events["description_ids"]
    missing = [d for d in ids if d not in index]
    if missing:
        raise InputDataError(f"{len(missing)} event description(s) have no vector for encoder {spec_encoder!r} (e.g. "
                             f"{missing[0]}): run `make embed-events` (ehrforge.event_embeddings) for the event types "
                             "of the config, then prepare the run again")
    rows = np.asarray([index[d] for d in ids], dtype=np.int64)
    h = np.asarray(events["hours"], dtype=np.float32).reshape(-1)
    t = np.stack([np.log1p(np.clip(h, 0, None)) / math.log1p(720.0), h / 240.0], axis=1)
    vals = np.asarray([0.0 if v is None else float(v) for v in events["values"]], dtype=np.float32)
    has = np.asarray([0.0 if v is None else 1.0 for v in events["values"]], dtype=np.float32)
    extras = np.concatenate([t.reshape(-1, N_TIME_FEATURES), np.stack([vals, has], axis=1).reshape(-1, 2)], axis=1)
    return rows, extras.astype(np.float32)


def event_features(events: dict, index: dict[str, int], vectors, spec_encoder: str = ""):
    """(n_events, dim + 4) float32 array: [description vector ; time features ; value features]."""
    import numpy as np

    rows, extras = event_rows_and_extras(events, index, spec_encoder)
    return np.concatenate([vectors[rows].reshape(len(rows), vectors.shape[1]), extras], axis=1).astype(np.float32)


def feature_dim(embedding_dim: int) -> int:
    return embedding_dim + N_TIME_FEATURES + N_VALUE_FEATURES


# ---------------------------------------------------------------------------------------------- tokenization


def placeholder_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _strip_events(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def encode(tokenizer, messages: list[dict], n_events: int, with_answer: bool) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, event_mask, labels) of an event-form conversation: the marker becomes `n_events` placeholder
    positions (mask 1); labels are the answer tokens (and what closes the assistant turn), -100 elsewhere."""
    plain = _strip_events(messages)
    if with_answer:
        prompt = tokenizer.apply_chat_template(plain[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(plain, tokenize=False)
        if not full.startswith(prompt):
            raise ConfigError("the chat template does not render the prompt as a prefix of the conversation; the "
                              "event form needs a template like chatml or llama3")
        answer_text = full[len(prompt):]
    else:
        prompt = tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)
        answer_text = ""
    parts = prompt.split(EVENTS_MARKER)
    if len(parts) > 2:
        raise InputDataError(f"the prompt holds {EVENTS_MARKER} more than once")
    ph = placeholder_id(tokenizer)
    ids = tokenizer(parts[0], add_special_tokens=False)["input_ids"]
    mask = [0] * len(ids)
    if len(parts) == 2:
        ids = ids + [ph] * n_events
        mask = mask + [1] * n_events
        tail = tokenizer(parts[1], add_special_tokens=False)["input_ids"]
        ids, mask = ids + tail, mask + [0] * len(tail)
    elif n_events:
        raise InputDataError(f"{n_events} events but no {EVENTS_MARKER} in the prompt")
    labels = [-100] * len(ids)
    if answer_text:
        ans = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
        ids, mask, labels = ids + ans, mask + [0] * len(ans), labels + ans
    return ids, mask, labels


# ------------------------------------------------------------------------------------------------- model


def _projector(kind: str, in_dim: int, hidden: int):
    from torch import nn

    if kind == "linear":
        return nn.Linear(in_dim, hidden)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


@functools.lru_cache(maxsize=1)
def _torch_module():
    """The LlemrModel class, defined on first use so that importing this module needs no torch."""
    from torch import nn

    class LlemrModel(nn.Module):
        """The LLM (LoRA-wrapped while training) + a projector from event features to its input embeddings."""

        def __init__(self, llm, in_dim: int, projector: str = "mlp"):
            super().__init__()
            self.llm = llm
            self.in_dim = in_dim
            self.projector_kind = projector
            hidden = llm.get_input_embeddings().weight.shape[1]
            self.projector = _projector(projector, in_dim, hidden).to(llm.get_input_embeddings().weight.dtype)

        @property
        def config(self):
            return self.llm.config

        @property
        def generation_config(self):
            return self.llm.generation_config

        def get_output_embeddings(self):  # the trainer's chunked loss runs the LM head on answer positions only
            return self.llm.get_output_embeddings()

        def embed(self, input_ids, event_mask, event_features):
            emb = self.llm.get_input_embeddings()(input_ids)
            if event_features is not None and event_features.shape[0]:
                proj = self.projector(event_features.to(emb.dtype))
                emb = emb.masked_scatter(event_mask.bool().unsqueeze(-1), proj)
            return emb

        def forward(self, input_ids, event_mask, event_features, attention_mask=None, labels=None, position_ids=None,
                    **kw):
            kw.pop("num_items_in_batch", None)
            emb = self.embed(input_ids, event_mask, event_features)
            return self.llm(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids,
                            labels=labels, **kw)

        def save_artifact(self, out_dir, tokenizer, spec: LlemrSpec, index: dict[str, int], vectors,
                          base_model_path: str) -> Path:
            """adapter (PEFT) + tokenizer + projector + description vectors + llemr.json, into `out_dir`."""
            import torch
            from safetensors.torch import save_file

            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.llm.save_pretrained(str(out))
            tokenizer.save_pretrained(str(out))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()},
                      str(out / PROJECTOR_FILE))
            ids = sorted(index, key=index.get)
            save_file({"vectors": torch.as_tensor(vectors).contiguous()}, str(out / VECTORS_FILE))
            meta = {"format": "llemr", "form_version": FORM_VERSION, "spec": spec.model_dump(), "in_dim": self.in_dim,
                    "projector": self.projector_kind, "base_model_path": str(base_model_path),
                    "description_ids": ids}
            (out / ARTIFACT_FILE).write_text(json.dumps(meta))
            return out

    return LlemrModel


def LlemrModel(*a, **kw):  # noqa: N802 - a class built on first use, so importing this module needs no torch
    return _torch_module()(*a, **kw)


def is_artifact(path: str | Path | None) -> bool:
    return bool(path) and (Path(path) / ARTIFACT_FILE).is_file()


def read_meta(path: str | Path) -> dict:
    return json.loads((Path(path) / ARTIFACT_FILE).read_text())


def load_artifact(path: str | Path, base_model_path: str | None = None, dtype=None, merge: bool = True):
    """-> (LlemrModel in eval mode, tokenizer, LlemrSpec, {description_id: row}, vectors). `merge`: fold the LoRA
    adapter into the base weights (inference)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not is_artifact(path):
        raise ConfigError(f"{path} is not an LLemr model directory (no {ARTIFACT_FILE}); train one with a "
                          "training/configs/*/*_llemr.yaml config")
    meta = read_meta(path)
    base = base_model_path or meta["base_model_path"]
    llm = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or torch.float32)
    llm = PeftModel.from_pretrained(llm, str(path))
    if merge:
        llm = llm.merge_and_unload()
    model = LlemrModel(llm, int(meta["in_dim"]), meta["projector"])
    model.projector.load_state_dict(load_file(str(path / PROJECTOR_FILE)))
    vectors = load_file(str(path / VECTORS_FILE))["vectors"].numpy()
    index = {d: i for i, d in enumerate(meta["description_ids"])}
    tok = AutoTokenizer.from_pretrained(str(path))
    return model.eval(), tok, LlemrSpec(**meta["spec"]), index, vectors


# ------------------------------------------------------------------------ generation and choice scoring (backend)


class InferenceInputs:
    """What the transformers backend needs to run an LLemr artifact: the spec and the description vectors."""

    def __init__(self, spec: LlemrSpec, index: dict[str, int], vectors):
        self.spec, self.index, self.vectors = spec, index, vectors

    def encode(self, tokenizer, messages: list[dict]):
        """(prompt ids, event mask, features) of a prompt; a text-form prompt has no events."""
        ev = events_of(messages)
        if ev is None:
            raise InputDataError("an LLemr model got a text-form prompt (no `events` on the user message): evaluate it "
                                 "on the event form (evaluation does this for a model whose adapter holds llemr.json)")
        feats = event_features(ev, self.index, self.vectors, self.spec.encoder)
        ids, mask, _ = encode(tokenizer, messages, len(feats), with_answer=False)
        return ids, mask, feats


def _left_pad(torch, seqs: list[list[int]], masks: list[list[int]], pad: int, device):
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
    ev = torch.tensor([[0] * (width - len(m)) + m for m in masks], device=device)
    att = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    return ids, ev, att, width


def backend_generate(backend, calls) -> list:
    """Greedy / sampled generation for event-form prompts: the prompt goes in as input embeddings (token embeddings
    with the projected events at the placeholder positions), left-padded in one batch."""
    import numpy as np

    from ehrforge.llm.backends import Result

    torch = backend._torch
    tok, model = backend.tokenizer, backend.model
    enc = [backend.llemr.encode(tok, c.messages) for c in calls]
    ids, ev, att, width = _left_pad(torch, [e[0] for e in enc], [e[1] for e in enc], tok.pad_token_id, backend.device)
    feats = [e[2] for e in enc if len(e[2])]
    feats = torch.from_numpy(np.concatenate(feats)).to(backend.device) if feats else None
    params = calls[0].params
    kwargs = backend._gen_kwargs(params)
    kwargs.pop("cache_implementation", None)  # the dynamic cache: inputs_embeds + a static cache is not supported
    start = time.monotonic()
    torch.manual_seed(params["seed"])
    with torch.inference_mode():
        emb = model.embed(ids, ev, feats)
        out = model.llm.generate(input_ids=ids, inputs_embeds=emb, attention_mask=att, **kwargs,
                                 return_dict_in_generate=True)
    latency = time.monotonic() - start
    seqs = out.sequences
    new = (seqs[:, width:] if seqs.shape[1] > width else seqs).tolist()
    results = []
    for row, gen in enumerate(new):
        n, finish = len(gen), "length"
        for j, t in enumerate(gen):
            if t in backend.eos_ids:
                n, finish = j + 1, "stop"
                break
        text_ids = [t for t in gen[:n] if t not in backend.eos_ids]
        results.append(Result(text=tok.decode(text_ids, skip_special_tokens=True), prompt_tokens=len(enc[row][0]),
                              completion_tokens=n, latency_s=latency, finish_reason=finish))
    return results


def backend_score(backend, calls) -> list:
    """log P(choice | prompt) per choice for event-form prompts (teacher forcing over prompt + choice tokens)."""
    import numpy as np

    from ehrforge.llm.backends import Result

    torch = backend._torch
    tok, model = backend.tokenizer, backend.model
    choices = calls[0].params["choices"]
    choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
    enc = [backend.llemr.encode(tok, c.messages) for c in calls]
    start = time.monotonic()
    scores: list[float] = []
    for ids_p, mask_p, feats_p in enc:
        seqs = [ids_p + cid for cid in choice_ids]
        masks = [mask_p + [0] * len(cid) for cid in choice_ids]
        ids, ev, att, width = _left_pad(torch, seqs, masks, tok.pad_token_id, backend.device)
        feats = torch.from_numpy(np.concatenate([feats_p] * len(seqs))).to(backend.device) if len(feats_p) else None
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model.llm(inputs_embeds=model.embed(ids, ev, feats), attention_mask=att, position_ids=pos).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for r, cid in enumerate(choice_ids):
            clen = len(cid)
            scores.append(sum(float(logp[r, width - clen + j - 1, cid[j]]) for j in range(clen)))
    latency = time.monotonic() - start
    results = []
    for i, (ids_p, _, _) in enumerate(enc):
        lps = dict(zip(choices, scores[i * len(choices):(i + 1) * len(choices)]))
        results.append(Result(text=max(lps, key=lambda c: lps[c]), prompt_tokens=len(ids_p), completion_tokens=0,
                              latency_s=latency, finish_reason="choice", choice_logprobs=lps))
    return results
