"""In-process `vllm.LLM` (CUDA only), with an optional LoRA adapter. vllm is imported here and nowhere else, so
machines without it never touch it; tests are behind the `vllm` marker. For a vLLM *server* use backend openai."""

from __future__ import annotations

import logging
import math
import time

from ehrforge.errors import ConfigError
from ehrforge.llm.backends import Call, Result, model_identity
from ehrforge.llm.config import LLMConfig

log = logging.getLogger(__name__)


class VLLMBackend:
    name = "vllm"
    in_process = True

    def __init__(self, config: LLMConfig):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ConfigError(
                "backend vllm needs the vllm package and a CUDA GPU (`pip install -e .[vllm]`). Without it use "
                "backend transformers, or run `vllm serve` elsewhere and use backend openai."
            ) from exc
        self.config = config
        kw = {"model": config.model, "seed": config.seed, "gpu_memory_utilization": config.gpu_memory_utilization}
        if config.dtype != "auto":
            kw["dtype"] = config.dtype
        if config.max_model_len:
            kw["max_model_len"] = config.max_model_len
        if config.adapter:
            kw["enable_lora"] = True
        self.llm = LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora = None
        if config.adapter:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, config.adapter)
        self.identity = model_identity(config)

    def configure(self, config: LLMConfig) -> None:
        self.config = config

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_prompt_tokens(self, call: Call) -> int:
        return len(self.prompt_ids(call.messages))

    def generate(self, calls: list[Call]) -> list[Result]:
        from vllm import SamplingParams

        gen = [c for c in calls if not c.params.get("choices")]
        results: dict[str, Result] = {}
        if gen:
            sps = []
            for c in gen:
                p = c.params
                sps.append(SamplingParams(temperature=p["temperature"], top_p=p["top_p"],
                                          max_tokens=p["max_new_tokens"],
                                          seed=p["seed"], logprobs=p["top_logprobs"] if p.get("logprobs") else None,
                                          ignore_eos=bool(p.get("ignore_eos"))))
            start = time.monotonic()
            outs = self.llm.chat([c.messages for c in gen], sps, lora_request=self.lora, use_tqdm=False)
            latency = time.monotonic() - start
            for c, o in zip(gen, outs):
                comp = o.outputs[0]
                lp = None
                if comp.logprobs:
                    lp = [{"token": step[t].decoded_token, "logprob": step[t].logprob,
                           "top_logprobs": [{"token": v.decoded_token, "logprob": v.logprob} for v in step.values()]}
                          for t, step in zip(comp.token_ids, comp.logprobs)]
                results[c.key] = Result(text=comp.text, prompt_tokens=len(o.prompt_token_ids),
                                        completion_tokens=len(comp.token_ids), latency_s=latency,
                                        finish_reason=comp.finish_reason, logprobs=lp)
        for c in calls:
            if c.params.get("choices"):
                results[c.key] = self._score(c)
        return [results[c.key] for c in calls]

    def _score(self, call: Call) -> Result:
        """Teacher-forced log P(choice | prompt) from vLLM's prompt_logprobs."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompt = self.prompt_ids(call.messages)
        choices = call.params["choices"]
        ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        start = time.monotonic()
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=prompt + cid) for cid in ids], sp,
                                 lora_request=self.lora, use_tqdm=False)
        lps = {}
        for c, cid, o in zip(choices, ids, outs):
            plp = o.prompt_logprobs
            lps[c] = sum(plp[len(prompt) + j][t].logprob for j, t in enumerate(cid)) if plp else -math.inf
        return Result(text=max(lps, key=lambda c: lps[c]), prompt_tokens=len(prompt), completion_tokens=0,
                      latency_s=time.monotonic() - start, finish_reason="choice", choice_logprobs=lps)
