"""Training configs the tests share: the tiny CPU preset with settings for runs of seconds."""

from pathlib import Path

from dsm_core.train_config import TrainConfig, load_config_file

CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs"

# A run of seconds: tiny model on 16x16 digits, no costly evaluation.
FAST = {
    "num_steps": 40,
    "log_every_steps": 1,
    "eval_every_steps": 1000,
    "eval_num_images": 16,
    "eval_batch_size": 16,
    "checkpoint_every_steps": 10,
    "batch_size": 8,
}


def tiny_config(**overrides) -> TrainConfig:
    """The tiny_cpu preset with ``FAST`` and ``overrides`` applied."""
    return load_config_file(CONFIGS / "tiny_cpu.json", {**FAST, **overrides})
