"""In-process batched generation with transformers, for CPUs and for GPUs without vLLM.

Prompts are rendered with the model's chat template, sorted by length by the runner (less padding), left-padded
and generated together. `generation_mode`:
  dynamic  the default KV cache (best on CPU, see bench/bench_llm.py);
  static   pre-allocated KV cache (`cache_implementation="static"`): fixed shapes, fewer allocations on GPU;
  compile  static cache + `torch.compile` of the decode step (transformers compiles it itself when the cache is
           static and `compile_config` is set; we use mode "max-autotune-no-cudagraphs"? no: "default", because
           CUDA-graph modes overwrite outputs between steps with this loop);
  auto     static+compile on CUDA, dynamic on CPU.
Sampling is seeded per batch (`torch.manual_seed(seed)` before each generate), so a batch of the same prompts gives
the same answers; a different batch composition may sample differently (temperature 0 is always deterministic).
"""

from __future__ import annotations

import logging
import time

from ehrforge.errors import ConfigError
from ehrforge.llm.backends import Call, Result, model_identity
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

    def __init__(self, config: LLMConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.device, self.dtype = resolve_device_dtype(config.device, config.dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model)
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
        self.model = model.to(self.device).eval()
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if not tok.chat_template:
            raise ConfigError(f"the tokenizer of {config.model!r} has no chat template; the client sends chat "
                              "messages, so use an instruct/chat model or set tokenizer.chat_template")
        gen_eos = self.model.generation_config.eos_token_id
        eos = gen_eos if gen_eos is not None else tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        mode = config.generation_mode
        if mode == "auto":
            mode = "compile" if self.device.startswith("cuda") else "dynamic"
        self.mode = mode
        self.identity = model_identity(config)
        self._torch = torch
        log.info("transformers backend: %s on %s (%s, mode %s)", config.model, self.device, self.dtype, self.mode)

    # -- helpers -------------------------------------------------------------------------------------------------
    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def count_prompt_tokens(self, call: Call) -> int:
        return len(self.prompt_ids(call.messages))

    def _gen_kwargs(self, params: dict) -> dict:
        kw = {"max_new_tokens": params["max_new_tokens"], "pad_token_id": self.tokenizer.pad_token_id,
              "eos_token_id": sorted(self.eos_ids)}
        if params["temperature"] > 0:
            kw.update(do_sample=True, temperature=params["temperature"], top_p=params["top_p"], top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.mode in ("static", "compile"):
            kw["cache_implementation"] = "static"
        if self.mode == "compile":
            from transformers import CompileConfig

            kw["compile_config"] = CompileConfig(fullgraph=False, mode="default", dynamic=False)
        elif self.mode == "static":
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
        torch = self._torch
        params = calls[0].params
        tok = self.tokenizer
        enc = tok([self.render(c.messages) for c in calls], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(self.device)
        want_logprobs = bool(params.get("logprobs"))
        start = time.monotonic()
        torch.manual_seed(params["seed"])
        with torch.inference_mode():
            out = self.model.generate(**enc, **self._gen_kwargs(params), return_dict_in_generate=True,
                                      output_logits=want_logprobs)
        latency = time.monotonic() - start
        n_prompt = enc["attention_mask"].sum(dim=1).tolist()
        new = out.sequences[:, enc["input_ids"].shape[1]:].tolist()
        logits = out.logits if want_logprobs else None
        results = []
        for row, ids in enumerate(new):
            n = len(ids)
            finish = "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    n, finish = j + 1, "stop"
                    break
            text_ids = [t for t in ids[:n] if t not in self.eos_ids]
            lp = self._logprobs(logits, row, ids[:n], params["top_logprobs"]) if logits is not None else None
            results.append(Result(text=tok.decode(text_ids, skip_special_tokens=True), prompt_tokens=int(n_prompt[row]),
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
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for r, (s, (plen, clen)) in enumerate(zip(chunk, chunk_spans)):
                offset = width - len(s)
                total = 0.0
                for j in range(clen):
                    pos_pred = offset + plen + j - 1  # the logits at position t predict token t+1
                    total += float(logp[r, pos_pred, s[plen + j]])
                scores.append(total)
        latency = time.monotonic() - start
        results = []
        for i, p in enumerate(prompts):
            lps = dict(zip(choices, scores[i * len(choices):(i + 1) * len(choices)]))
            results.append(Result(text=max(lps, key=lambda c: lps[c]), prompt_tokens=len(p), completion_tokens=0,
                                  latency_s=latency, finish_reason="choice", choice_logprobs=lps))
        return results
