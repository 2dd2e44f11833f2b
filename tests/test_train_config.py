"""Training configs: JSON round trip, strict fields, the presets, command-line overrides."""

import dataclasses
import json

import pytest
from train_helpers import CONFIGS, tiny_config

import dsm_core as dc
from dsm_core import train_config
from dsm_core.config import from_dict
from dsm_core.train_config import TrainConfig, load_config_file, resolve_config, validate_config


def test_config_json_round_trip():
    cfg = tiny_config(**{"data.subset": "A", "data.subset_size": 100, "ema_decay": 0.99})
    text = train_config.config_to_json(cfg)
    assert from_dict(TrainConfig, json.loads(text)) == cfg
    assert resolve_config(json.loads(text)) == cfg


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown field"):
        resolve_config({"batch_sise": 3})
    with pytest.raises(ValueError, match="unknown field"):
        resolve_config({"data": {"nmae": "digits"}})
    with pytest.raises(ValueError, match="unknown field"):
        resolve_config({"model": {"preset": "tiny", "unet": {"widht": 4}}})
    with pytest.raises(ValueError, match="tmin"):
        tiny_config(**{"noise.tmin": 1.0})
    with pytest.raises(ValueError, match="subset_size"):
        tiny_config(**{"data.subset": "B"})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_presets_resolve(path):
    cfg = load_config_file(path)
    assert cfg.model.channels == (1 if cfg.data.grayscale else 3)


def test_release_presets_are_the_release():
    for name, channels in (("imagenet64_gray", 1), ("imagenet64_color", 3)):
        cfg = load_config_file(CONFIGS / f"{name}.json")
        # the architecture as released; the floor is the release's smallest trained t
        release = dc.presets.preset_config("imagenet64", channels)
        assert cfg.model == dataclasses.replace(release, t_min=1e-9)
        assert (cfg.batch_size, cfg.num_steps, cfg.lr) == (128, 1_000_000, 5e-4)
        assert cfg.lr_halve_every_steps == 100_000
        assert (cfg.noise.t_min, cfg.noise.t_max) == (1e-9, 1e3)
        assert (cfg.warmup_steps, cfg.grad_clip, cfg.ema_decay) == (0, None, None)
        assert cfg.loss.time_weight == 1.0 and not cfg.tf32 and not cfg.bf16
    score = load_config_file(CONFIGS / "imagenet64_color_score.json")
    assert score.model.head == "score" and score.loss.time_weight == 0
    gen = load_config_file(CONFIGS / "generalization_imagenet64.json")
    assert gen.lr == 2e-4 and gen.data.subset == "A"
    model = dc.build_energy_model("imagenet64", channels=3)
    assert sum(p.numel() for p in model.parameters()) == 8_649_856


def test_parse_overrides_and_find_config():
    parsed = train_config.parse_overrides(
        ["lr=2e-4", "data.name=digits", "grad_clip=null", "x=[1,2]"]
    )
    assert parsed == {"lr": 2e-4, "data.name": "digits", "grad_clip": None, "x": [1, 2]}
    with pytest.raises(ValueError, match="key=value"):
        train_config.parse_overrides(["lr"])
    assert train_config.find_config("tiny_cpu", CONFIGS) == CONFIGS / "tiny_cpu.json"
    with pytest.raises(FileNotFoundError, match="tiny_cpu"):
        train_config.find_config("nope", CONFIGS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss.heat_weight": -1.0}, "weights must be >= 0"),
        ({"loss.heat_weight": 1.0, "model.head": "score"}, "needs an energy model"),
        ({"loss.heat_weight": 1.0, "loss.heat_images": 0}, "heat_images >= 1"),
        ({"loss.heat_weight": 1.0, "loss.heat_max_var": 1e-9}, "must exceed noise.t_min"),
        ({"loss.heat_weight": 1.0, "loss.heat_restart": 2.0}, "heat_restart <= 1"),
        ({"loss.heat_points": "random"}, "not one of"),
    ],
)
def test_bad_heat_term_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_config(load_config_file(CONFIGS / "tiny_cpu.json", overrides))
