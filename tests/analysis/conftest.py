"""Fixtures of the analysis tests: samples of the Gaussian oracle."""

import pytest
import torch

import dsm_core as dc


@pytest.fixture
def oracle_images(gaussian_oracle: dc.GaussianEnergy, generator: torch.Generator) -> torch.Tensor:
    """Six exact samples of the oracle (6, 1, 4, 4), float64."""
    return gaussian_oracle.sample(6, generator=generator)
