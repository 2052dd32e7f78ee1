from pathlib import Path

import pytest

from ehrforge.errors import ConfigError
from training.config import TrainConfig, load_train_config, run_id_for
from training.launch import ACCELERATE_DIR, accelerate_config, validate_accelerate_config

CONFIGS = sorted(Path("training/configs").glob("*/*.yaml"))


def test_config_files_exist():
    names = {p.relative_to("training/configs").as_posix() for p in CONFIGS}
    assert "demo/tiny_lora.yaml" in names
    assert len(names) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.as_posix())
def test_every_config_validates(path):
    text = path.read_text()
    assert text.startswith("# make train CONFIG=" + path.as_posix()), "a config opens with the command that runs it"
    parts = path.stem.split("_", 1)
    cfg = load_train_config(path)
    assert cfg.method in parts[1] or parts[1].startswith("cpt"), f"{path.name} is named <size>_<method>"
    for n in (1, 8):
        validate_accelerate_config(accelerate_config(cfg, n))


@pytest.mark.parametrize("path", sorted(ACCELERATE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    raw = validate_accelerate_config(path)
    assert raw["num_machines"] == 1


def test_zero3_config_is_stage3():
    raw = validate_accelerate_config(ACCELERATE_DIR / "zero3.yaml")
    assert raw["distributed_type"] == "DEEPSPEED"
    import json

    assert json.loads((ACCELERATE_DIR / "ds_zero3.json").read_text())["zero_optimization"]["stage"] == 3


def test_overrides_and_run_id():
    a = load_train_config("training/configs/demo/tiny_lora.yaml")
    b = load_train_config("training/configs/demo/tiny_lora.yaml", ["lora.r=8", "train.max_steps=5"])
    assert b.lora.r == 8 and b.train.max_steps == 5
    assert run_id_for(a) != run_id_for(b)
    assert run_id_for(a) == run_id_for(load_train_config("training/configs/demo/tiny_lora.yaml"))


@pytest.mark.parametrize("overrides, fragment", [
    (["lora.rank=8"], "lora.rank"),                       # typo: unknown key
    (["speed.pack_tokens=256"], "pack_tokens"),           # smaller than max_seq_len
    (["stages=[sft, cpt]"], "backwards"),
    (["method=qlora", "distributed=zero3"], "qlora"),
    (["train.early_stopping_patience=2", "train.eval_steps=30", "train.save_steps=50"], "multiple"),
    (["method=sgd"], "method"),
])
def test_bad_configs_fail_clearly(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_train_config("training/configs/demo/tiny_lora.yaml", overrides)


def test_auto_distributed():
    assert TrainConfig(method="lora").resolved_distributed() == "ddp"
    assert TrainConfig(method="full").resolved_distributed() == "fsdp"


def test_optional_dependencies_fail_clearly_when_missing(monkeypatch):
    import importlib.util

    from training.recipes import qlora
    from training.trainer import _liger

    monkeypatch.setattr(qlora, "_bnb_version", lambda: None)
    with pytest.raises(ConfigError, match=r"pip install 'ehrforge\[qlora\]'"):
        qlora.prepare("unused", TrainConfig(method="qlora"), None)
    monkeypatch.setattr(qlora, "_bnb_version", lambda: (0, 45))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="bitsandbytes >= 0.48"):
        qlora.prepare("unused", TrainConfig(method="qlora"), None)
    monkeypatch.undo()
    if importlib.util.find_spec("liger_kernel") is None:
        assert _liger(TrainConfig()) is False  # auto: skipped when not installed
        with pytest.raises(ConfigError, match="liger"):
            _liger(load_train_config(None, ["speed.liger=true"]))


def test_cli_validate_only(capsys):
    from training.launch import main

    assert main(["--config", "training/configs/demo/tiny_lora.yaml", "--validate-only", "lora.r=4"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["--config", "training/configs/demo/tiny_lora.yaml", "--validate-only", "lora.r=zero"]) == 2


def test_training_methods_come_from_the_recipe_registry():
    """A new method is one registered recipe: the config accepts it and the trainer reads what it is from there."""
    from training.recipes import RECIPES, all_recipes, register_recipe

    assert {"lora", "qlora", "full"} <= set(all_recipes())
    assert all_recipes()["qlora"].is_adapter and not all_recipes()["full"].is_adapter
    with pytest.raises(ConfigError, match="registered: full, grpo, llemr, lora, qlora"):
        load_train_config(None, ["method=dora"])

    @register_recipe("frozen_head_for_test", is_adapter=False, default_distributed="zero3", supports_sharding=False)
    def prepare(model_path, cfg, dtype):  # pragma: no cover - never trained here
        raise AssertionError

    try:
        cfg = load_train_config(None, ["method=frozen_head_for_test"])
        assert cfg.resolved_distributed() == "zero3"
        with pytest.raises(ConfigError, match="not supported"):
            load_train_config(None, ["method=frozen_head_for_test", "distributed=fsdp"])
    finally:
        RECIPES.pop("frozen_head_for_test")
