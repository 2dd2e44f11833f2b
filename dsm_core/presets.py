"""Named architectures: the release's ImageNet64 UNet and small ones for CPU and tests."""

from typing import Any

from dsm_core.config import EnergyConfig, UNetConfig, apply_overrides
from dsm_core.energy import EnergyModel, ScoreModel, model_from_config

PRESETS: dict[str, EnergyConfig] = {
    # Exactly the released models (reference-spec §1): 8,647,552 params gray, 8,649,856 color.
    "imagenet64": EnergyConfig(image_size=64, unet=UNetConfig()),
    # Table 1's score-network baseline: the same UNet, D = y - t f.
    "imagenet64-score": EnergyConfig(image_size=64, unet=UNetConfig(), head="score"),
    # CPU: 32x32 natural-image crops (the shipped default model).
    "natural32": EnergyConfig(
        image_size=32,
        unet=UNetConfig(base_width=32, encoder_layers=2, middle_layers=3, decoder_layers=2),
        time_term="gaussian",
    ),
    # CPU: 28x28 Fashion-MNIST (28 = 4 * 7, so two scales).
    "fashion28": EnergyConfig(
        image_size=28,
        unet=UNetConfig(
            base_width=32, num_scales=2, encoder_layers=2, middle_layers=3, decoder_layers=2
        ),
        time_term="gaussian",
    ),
    # Seconds-scale model for tests and demos.
    "tiny": EnergyConfig(
        image_size=16,
        unet=UNetConfig(
            base_width=8,
            num_scales=2,
            encoder_layers=2,
            middle_layers=2,
            decoder_layers=2,
            embed_dim=32,
            num_frequencies=8,
        ),
    ),
}


def preset_config(preset: str, channels: int = 1, **overrides: Any) -> EnergyConfig:
    """The EnergyConfig of a named preset with ``channels`` and dotted/bare field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return apply_overrides(PRESETS[preset], {"unet.channels": channels, **overrides})


def build_energy_model(
    preset: str, channels: int = 1, **overrides: Any
) -> EnergyModel | ScoreModel:
    """An untrained model of a named preset (``"imagenet64"`` is the release's architecture).

    Args:
        preset: one of ``PRESETS``.
        channels: 1 (grayscale) or 3 (color).
        **overrides: config fields, e.g. ``image_size=32``, ``base_width=16``,
            ``head="squared_norm"``, ``time_term="gaussian"``, ``unet.embed_t_min=1e-9``
            (the paper's frequencies).
    """
    return model_from_config(preset_config(preset, channels, **overrides))
