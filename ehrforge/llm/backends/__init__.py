"""Backend registry. Each backend lives in its own module, imported only when a config names it, so that
`import ehrforge.llm` never pulls in torch, vllm or openai.

A backend exposes `name`, `identity` (what the cache key calls "the model"), `count_prompt_tokens(call)` and
either `async acall(call) -> Result` plus `aopen()`/`aclose()`/`acheck()` (remote, run concurrently) or
`generate(calls) -> list[Result]` (in-process, run in batches).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REGISTRY: dict[str, str] = {}
_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def register_backend(name: str, target: str) -> None:
    """Register `module:Class` under `name` (the value of `LLMConfig.backend`)."""
    _REGISTRY[name] = target


register_backend("openai", "ehrforge.llm.backends.openai_backend:OpenAIBackend")
register_backend("transformers", "ehrforge.llm.backends.transformers_backend:TransformersBackend")
register_backend("vllm", "ehrforge.llm.backends.vllm_backend:VLLMBackend")


@dataclass
class Call:
    """One distinct call (several requests with the same cache key share one)."""

    key: str
    request_id: str
    messages: list[dict]
    params: dict  # temperature, top_p, max_new_tokens, seed, logprobs, top_logprobs, choices


@dataclass
class Result:
    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    logprobs: list[dict] | None = None
    choice_logprobs: dict[str, float] | None = None
    error: str | None = None
    attempts: int = 1
    cost_usd: float = 0.0
    extra: dict = field(default_factory=dict)


def get_backend(config) -> Any:
    """Build (remote) or load once per process (in-process: the model stays loaded across run_batch calls)."""
    if config.backend not in _REGISTRY:
        from ehrforge.errors import ConfigError

        raise ConfigError(f"unknown LLM backend {config.backend!r}; known: {sorted(_REGISTRY)}")
    module_name, cls_name = _REGISTRY[config.backend].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not getattr(cls, "in_process", False):
        return cls(config)
    key = (config.backend, config.model, config.adapter, config.dtype, config.device, config.max_model_len)
    with _LOCK:
        if key not in _LOADED:
            _LOADED.clear()  # one in-process model at a time: a second would double the memory
            _LOADED[key] = cls(config)
        backend = _LOADED[key]
    backend.configure(config)  # sampling/batching/mode settings may change between calls without a reload
    return backend


def model_identity(config) -> str:
    """The cache's notion of "the model", computed without loading it (a fully cached re-run loads nothing)."""
    if config.backend == "openai":
        from ehrforge.llm.config import normalize_url

        return f"openai:{normalize_url(config.base_url)}:{config.model}"
    dtype = config.dtype
    if config.backend == "transformers":
        from ehrforge.llm.backends.transformers_backend import resolve_device_dtype

        dtype = str(resolve_device_dtype(config.device, config.dtype)[1]).removeprefix("torch.")
    return f"{config.backend}:{fingerprint(config.model)}|adapter:{fingerprint(config.adapter)}|dtype:{dtype}"


def unload_backends() -> None:
    with _LOCK:
        _LOADED.clear()


def fingerprint(path_or_id: str | None) -> str:
    """Identity of a model or adapter: for a local directory a hash of its config and weights (size + first and
    last MiB of each weight file, so a 1B model hashes in milliseconds); otherwise the hub id itself."""
    if not path_or_id:
        return "none"
    path = Path(path_or_id)
    if not path.is_dir():
        return f"hub:{path_or_id}"
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.suffix not in (".json", ".safetensors", ".bin", ".jinja", ".model", ".txt"):
            continue
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            if size <= 2 << 20:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                h.update(fh.read())
    return f"dir:{h.hexdigest()[:24]}"


def params_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True)
