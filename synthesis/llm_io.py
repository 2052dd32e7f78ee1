"""LLM plumbing shared by the LLM task families: the generator config, one call path, parsing and filters.

Every call goes through `ehrforge.llm.run_batch` (its cache in llm.calls makes re-runs free, its PHI guard decides
where note text may go). Every raw output is kept in `synthesis.llm_outputs` with its verdict: accepted, or
rejected with a reason (not_json, missing_field, empty_field, too_long, ...). Nothing malformed reaches
synthesis.instructions.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ehrforge.errors import ConfigError
from ehrforge.paths import REPO_ROOT, runs_dir
from synthesis import LLM_OUTPUTS_TABLE

log = logging.getLogger(__name__)

UNANSWERABLE = "The note does not contain this information."


class Rejected(ValueError):
    """An output that must not become an instruction row; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_json_object(text: str | None) -> dict:
    """The first JSON object in `text` (code fences and chatter around it are tolerated)."""
    if text is None or not text.strip():
        raise Rejected("empty_output")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        start = cand.find("{")
        while start != -1:
            try:
                obj, _ = json.JSONDecoder().raw_decode(cand[start:])
                if isinstance(obj, dict):
                    return obj
            except json.JSONDecodeError:
                pass
            start = cand.find("{", start + 1)
    raise Rejected("not_json", text[:80])


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def check_instruction_answer(obj: dict, source_text: str, *, max_instruction_chars: int = 1000,
                             max_answer_chars: int = 2000, min_answer_chars: int = 1) -> tuple[str, str]:
    """Common filters for {"instruction", "answer"} outputs. Returns the cleaned pair or raises Rejected."""
    for key in ("instruction", "answer"):
        if key not in obj:
            raise Rejected("missing_field", key)
    ins, ans = obj["instruction"], obj["answer"]
    if isinstance(ans, list) and all(isinstance(a, str) for a in ans):
        ans = "; ".join(ans)
    if not isinstance(ins, str) or not isinstance(ans, str):
        raise Rejected("wrong_type", f"instruction={type(ins).__name__}, answer={type(ans).__name__}")
    ins, ans = ins.strip(), ans.strip()
    if not ins or len(ans) < min_answer_chars:
        raise Rejected("empty_field")
    if len(ins) > max_instruction_chars or len(ans) > max_answer_chars:
        raise Rejected("too_long", f"{len(ins)}/{len(ans)} chars")
    if re.search(r"<\|im_(start|end)\|>|\{\{|\}\}|<instruction>|\[INSERT", ins + ans):
        raise Rejected("template_leak")
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in ins + ans) / max(1, len(ins + ans))
    if printable < 0.98:
        raise Rejected("garbage_characters")
    if _norm(ins) == _norm(ans):
        raise Rejected("answer_equals_instruction")
    if len(ins) > 200 and _norm(ins) in _norm(source_text):
        raise Rejected("instruction_copies_source")
    return ins, ans


# --------------------------------------------------------------------------------------------- generator

def llm_config(ctx):
    """The generator's LLMConfig; builds the tiny random model first when the config asks for it."""
    from ehrforge.llm import LLMConfig

    section = ctx.cfg.generator
    data = dict(section.llm)
    model = str(data.get("model", ""))
    if "${runs}" in model:
        model = model.replace("${runs}", str(runs_dir()))
        data["model"] = model
    if data.get("backend", "transformers") != "openai" and model and not Path(model).is_absolute() \
            and not Path(model).exists() and (REPO_ROOT / model).exists():
        data["model"] = model = str(REPO_ROOT / model)
    if data.get("backend", "transformers") != "openai" and model:
        from ehrforge.models import is_offline_model, resolve_model_path

        if is_offline_model(model):  # e.g. smollm2-135m-instruct: converted once from its wheel
            data["model"] = model = resolve_model_path(model)
    if section.build_tiny_model and data.get("backend", "transformers") != "openai" \
            and not _tiny_model_ready(Path(model)):
        from ehrforge.tiny_model import build_tiny_model, warehouse_texts

        log.info("building the tiny random model at %s (generator.build_tiny_model: true)", model)
        build_tiny_model(model, warehouse_texts(ctx.con), seed=ctx.seed)
    try:
        return LLMConfig.model_validate(data)
    except Exception as exc:  # pydantic error with the field path
        raise ConfigError(f"invalid generator.llm section: {exc}") from None


def run_requests(ctx, task: str, requests: list) -> list:
    """run_batch with this synthesis run, counting calls and cache hits into ctx.stats[task]."""
    from ehrforge.llm import RunStats, run_batch

    if not requests:
        return []
    cfg = ctx.llm_config if getattr(ctx, "llm_config", None) else llm_config(ctx)
    ctx.llm_config = cfg
    stats = RunStats()
    responses = run_batch(requests, cfg, run=ctx.run, con=ctx.con, progress=ctx.cfg.progress, stats=stats)
    st = ctx.stats.setdefault(task, {})
    st["llm_requests"] = st.get("llm_requests", 0) + stats.n_requests
    st["llm_calls"] = st.get("llm_calls", 0) + stats.n_calls
    st["llm_cached"] = st.get("llm_cached", 0) + stats.n_cached
    st["llm_wall_s"] = round(st.get("llm_wall_s", 0.0) + stats.wall_s, 2)
    return responses


def generator_model(ctx) -> str:
    cfg = ctx.llm_config
    return f"{cfg.backend}:{cfg.model}" + (f"+{cfg.adapter}" if cfg.adapter else "")


class OutputLog:
    """Collects one row per LLM output (accepted or rejected with its reason) for synthesis.llm_outputs."""

    def __init__(self, ctx, task: str):
        self.ctx, self.task = ctx, task
        self.reasons: Counter = Counter()
        self.n_accepted = 0

    def add(self, request_id: str, source_id: str, p_hash: str, response, status: str, reason: str | None = None,
            instruction_id: str | None = None) -> None:
        if status == "accepted":
            self.n_accepted += 1
        else:
            self.reasons[reason] += 1
        rows = self.ctx.extra_tables.setdefault(LLM_OUTPUTS_TABLE, [])
        rows.append({"dataset": self.ctx.cfg.dataset, "task": self.task, "request_id": request_id,
                     "source_id": source_id, "prompt_hash": p_hash, "cache_key": getattr(response, "cache_key", ""),
                     "cached": bool(getattr(response, "cached", False)), "raw_text": getattr(response, "text", None),
                     "status": status, "reject_reason": reason, "instruction_id": instruction_id})

    def close(self) -> None:
        st = self.ctx.stats.setdefault(self.task, {})
        st["accepted"] = st.get("accepted", 0) + self.n_accepted
        rej = st.setdefault("rejections", {})
        for k, v in self.reasons.items():
            rej[k] = rej.get(k, 0) + v


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def _tiny_model_ready(path: Path) -> bool:
    """The tiny model at `path` is finished. An incomplete one (an empty folder a killed run of an older version
    left) is rebuilt over; a folder that holds something else is never overwritten."""
    from ehrforge.tiny_model import tiny_model_complete

    if tiny_model_complete(path):
        return True
    if path.is_dir() and any(p for p in path.iterdir() if p.name not in MODEL_LEFTOVERS):
        raise ConfigError(
            f"generator.llm.model {path} exists but is not a complete model (no config.json, tokenizer and "
            "weights). Delete the folder to have the tiny model rebuilt there, or point generator.llm.model at "
            "a complete model.")
    return False


# the files build_tiny_model writes: a folder holding only some of them is a half-written tiny model (older
# versions wrote in place), which is safe to rebuild over
MODEL_LEFTOVERS = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", ".complete"}
