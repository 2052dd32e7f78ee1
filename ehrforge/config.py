"""Configs are data: YAML validated by a pydantic model, overridable by `key=value` on the command line.

    cfg = load_config("synthesis/configs/demo.yaml", SynthesisConfig, ["seed=7", "tasks.risk.quota=100"])
    config_hash(cfg)  # stable sha256 of the resolved config; goes into every row a job writes
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ehrforge.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML (`3`, `true`, `[a, b]`, `null`)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. seed=7 or lora.r=16)")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section of the config")
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def load_config(path: str | Path | None, model: type[M], overrides: list[str] | None = None) -> M:
    """Read YAML (or start from defaults when `path` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass CONFIG=<path to a .yaml file>")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}:\n" + "\n".join(lines)) from None


def config_json(cfg: BaseModel | dict) -> str:
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(cfg: BaseModel | dict) -> str:
    return hashlib.sha256(config_json(cfg).encode()).hexdigest()
