"""In-process batched generation with transformers, for CPUs and for GPUs without vLLM.

Prompts are rendered with the model's chat template, sorted by length by the runner (less padding), left-padded
and generated together (`batch_size` per generate call). `generation_mode`:
  dynamic  the default growing KV cache;
  static   pre-allocated KV cache (`cache_implementation="static"`) with transformers' default behaviour for it: on
           CUDA the decode step is auto-compiled (CompileConfig default, mode "reduce-overhead", i.e. CUDA graphs;
           the configuration measured at 6.5k tok/s on an H100 before this client); on CPU no compilation;
  compile  static cache + `torch.compile` of the decode step with mode "max-autotune-no-cudagraphs" (no CUDA graphs:
           a manual "reduce-overhead" compile overwrote outputs between steps in earlier trials);
On CUDA with static/compile, prompt widths are bucketed to multiples of 64 so compiled graphs are reused.
  auto     static on CUDA, dynamic on CPU (see bench/bench_llm.py and the README for the measurements).
Sampling is seeded per batch (`torch.manual_seed(seed)` before each generate): the same prompts in the same batch
give the same answers; a different batch composition may sample differently (temperature 0 is deterministic).
"""

from __future__ import annotations

import logging
import time

from typing import TYPE_CHECKING

from ehrforge.errors import ConfigError
from ehrforge.llm.backends import Call, Result, model_identity

if TYPE_CHECKING:  # only attributes are read, so the GPU bench can pass a plain namespace without pydantic
    from ehrforge.llm.config import LLMConfig

log = logging.getLogger(__name__)


def resolve_device_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, getattr(torch, dtype)


class TransformersBackend:
    name = "transformers"
    in_process = True
    compile_mode = "max-autotune-no-cudagraphs"
    width_bucket = 64

    def __init__(self, config: LLMConfig, model=None, tokenizer=None):
        """Load `config.model` (+ `config.adapter`), or wrap an already built `model`/`tokenizer` (benchmarks,
        evaluating a model in memory right after training)."""
        import torch

        self.config = config
        self._torch = torch
        self.llemr = None  # ehrforge.llemr.InferenceInputs when the adapter is an LLemr artifact (event-form prompts)
        self.device, self.dtype = resolve_device_dtype(config.device, config.dtype)
        if model is None:
            model, tokenizer = self._load(config)
        else:
            self.device = str(next(model.parameters()).device)
            self.dtype = next(model.parameters()).dtype
        self.model = model.to(self.device).eval()
        self.tokenizer = tok = tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        gen_eos = self.model.generation_config.eos_token_id
        eos = gen_eos if gen_eos is not None else tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.configure(config)
        log.info("transformers backend: %s on %s (%s, mode %s)", config.model, self.device, self.dtype, self.mode)

    def configure(self, config: LLMConfig) -> None:
        self.config = config
        mode = config.generation_mode
        if mode == "auto":
            # measured (bench/bench_llm.py): on CPU the dynamic cache is fastest and compile does not apply; on CUDA
            # the static cache was the fastest configuration measured before this client (6.5k vs 2.9k tok/s, H100)
            mode = "static" if self.device.startswith("cuda") else "dynamic"
        self.mode = mode
        self.identity = model_identity(config)

    def _load(self, config: LLMConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ehrforge import llemr

        if config.adapter and llemr.is_artifact(config.adapter):  # events enter as input embeddings
            model, tokenizer, spec, index, vectors = llemr.load_artifact(config.adapter, config.model, dtype=self.dtype)
            self.llemr = llemr.InferenceInputs(spec, index, vectors)
            return model, tokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(config.model)
            model = AutoModelForCausalLM.from_pretrained(config.model, dtype=self.dtype)
        except OSError as exc:
            raise ConfigError(
                f"cannot load model {config.model!r}: {exc}. Give a local model directory (e.g. one made by "
                "`python -m ehrforge.tiny_model --out runs/tiny-llama`) or a hub id already in the local cache."
            ) from exc
        if config.adapter:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, config.adapter).merge_and_unload()
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load LoRA adapter {config.adapter!r} onto {config.model!r}: {exc}") from exc
        if not tokenizer.chat_template:
            raise ConfigError(f"the tokenizer of {config.model!r} has no chat template; the client sends chat "
                              "messages, so use an instruct/chat model or set tokenizer.chat_template")
        return model, tokenizer

    # -- helpers -------------------------------------------------------------------------------------------------
    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def count_prompt_tokens(self, call: Call) -> int:
        if self.llemr is not None:
            return len(self.llemr.encode(self.tokenizer, call.messages)[0])
        return len(self.prompt_ids(call.messages))

    def _gen_kwargs(self, params: dict) -> dict:
        kw = {"max_new_tokens": params["max_new_tokens"], "pad_token_id": self.tokenizer.pad_token_id,
              "eos_token_id": sorted(self.eos_ids)}
        if params["temperature"] > 0:
            kw.update(do_sample=True, temperature=params["temperature"], top_p=params["top_p"], top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.get("ignore_eos"):
            kw["min_new_tokens"] = params["max_new_tokens"]
        if self.mode in ("static", "compile"):
            kw["cache_implementation"] = "static"
        if self.mode == "compile":
            from transformers import CompileConfig

            kw["compile_config"] = CompileConfig(fullgraph=False, mode=self.compile_mode, dynamic=False)
        elif self.mode == "static" and params.get("logprobs"):
            # transformers' auto-compile of a static cache on CUDA uses CUDA graphs, whose output buffers are reused
            # between steps; per-step logits must not be overwritten, so no graphs when logprobs are wanted
            kw["disable_compile"] = True
        return kw

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, calls: list[Call]) -> list[Result]:
        """Run a batch; calls with different sampling params are generated in separate sub-batches."""
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(calls):
            sig = repr(sorted((k, v) for k, v in c.params.items() if k != "top_logprobs" or c.params.get("logprobs")))
            groups.setdefault(sig, []).append(i)
        results: list[Result | None] = [None] * len(calls)
        for idx in groups.values():
            sub = [calls[i] for i in idx]
            try:
                if self.llemr is not None:
                    from ehrforge import llemr

                    out = (llemr.backend_score if sub[0].params.get("choices") else llemr.backend_generate)(self, sub)
                else:
                    out = self._score(sub) if sub[0].params.get("choices") else self._generate(sub)
            except Exception as exc:  # noqa: BLE001 - recorded per call, never dropped
                if isinstance(exc, (KeyboardInterrupt, MemoryError)):
                    raise
                log.exception("transformers batch failed")
                out = [Result(error=f"{type(exc).__name__}: {exc}") for _ in sub]
            for i, r in zip(idx, out):
                results[i] = r
        return results  # type: ignore[return-value]

    def _generate(self, calls: list[Call]) -> list[Result]:
        return self.generate_ids([self.prompt_ids(c.messages) for c in calls], calls[0].params)

    def generate_ids(self, prompts: list[list[int]], params: dict) -> list[Result]:
        """Generate for already tokenized prompts (left-padded into one batch) with one set of sampling params."""
        torch = self._torch
        tok = self.tokenizer
        width = max(len(p) for p in prompts)
        if self.mode in ("static", "compile") and self.device.startswith("cuda"):
            # compiled decode steps are specialised on shapes: bucket the prompt width (extra left padding is
            # masked) so that a run compiles a handful of graphs, not one per batch
            width = -(-width // self.width_bucket) * self.width_bucket
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        want_logprobs = bool(params.get("logprobs"))
        kwargs = self._gen_kwargs(params)
        start = time.monotonic()
        torch.manual_seed(params["seed"])
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs,
                                      return_dict_in_generate=True, output_logits=want_logprobs)
        latency = time.monotonic() - start
        new = out.sequences[:, width:].tolist()
        logits = out.logits if want_logprobs else None
        results = []
        for row, ids in enumerate(new):
            n = len(ids)
            finish = "length"
            if not params.get("ignore_eos"):
                for j, t in enumerate(ids):
                    if t in self.eos_ids:
                        n, finish = j + 1, "stop"
                        break
            text_ids = [t for t in ids[:n] if t not in self.eos_ids]
            lp = self._logprobs(logits, row, ids[:n], params["top_logprobs"]) if logits is not None else None
            results.append(Result(text=tok.decode(text_ids, skip_special_tokens=True), prompt_tokens=len(prompts[row]),
                                  completion_tokens=n, latency_s=latency, finish_reason=finish, logprobs=lp))
        return results

    def _logprobs(self, logits, row: int, ids: list[int], k: int) -> list[dict]:
        torch = self._torch
        steps = []
        for j, t in enumerate(ids):
            lp = torch.log_softmax(logits[j][row].float(), dim=-1)
            top = torch.topk(lp, min(k, lp.shape[-1])) if k else None
            steps.append({
                "token": self.tokenizer.decode([t]),
                "logprob": float(lp[t]),
                "top_logprobs": [] if top is None else [
                    {"token": self.tokenizer.decode([int(i)]), "logprob": float(v)}
                    for v, i in zip(top.values.tolist(), top.indices.tolist())],
            })
        return steps

    def _score(self, calls: list[Call]) -> list[Result]:
        """log P(choice | prompt) for every choice: one teacher-forced forward pass over prompt+choice tokens,
        summing the log-probabilities of the choice tokens (exact for multi-token choices too)."""
        torch = self._torch
        tok = self.tokenizer
        choices = calls[0].params["choices"]
        choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        seqs, spans = [], []
        prompts = [self.prompt_ids(c.messages) for c in calls]
        for p in prompts:
            for cid in choice_ids:
                seqs.append(p + cid)
                spans.append((len(p), len(cid)))
        start = time.monotonic()
        scores: list[float] = []
        step = max(1, self.config.batch_size)
        for b in range(0, len(seqs), step):
            chunk, chunk_spans = seqs[b:b + step], spans[b:b + step]
            width = max(len(s) for s in chunk)
            pad = tok.pad_token_id
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in chunk], device=self.device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in chunk], device=self.device)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            # left padding right-aligns every sequence, so the choice tokens are the last `clen` positions: only the
            # last max(clen)+1 positions need logits (a 128k vocabulary over whole prompts would not fit in memory)
            keep = max(clen for _, clen in chunk_spans) + 1
            with torch.inference_mode():
                try:
                    logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                        logits_to_keep=keep).logits
                except TypeError:  # models without logits_to_keep
                    logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -keep:]
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, (s, (plen, clen)) in enumerate(zip(chunk, chunk_spans)):
                total = 0.0
                for j in range(clen):
                    # the logits at position t predict token t+1; choice token j sits at width - clen + j
                    total += float(logp[r, keep - clen + j - 1, s[plen + j]])
                scores.append(total)
        latency = time.monotonic() - start
        results = []
        for i, p in enumerate(prompts):
            lps = dict(zip(choices, scores[i * len(choices):(i + 1) * len(choices)]))
            results.append(Result(text=max(lps, key=lambda c: lps[c]), prompt_tokens=len(p), completion_tokens=0,
                                  latency_s=latency, finish_reason="choice", choice_logprobs=lps))
        return results
