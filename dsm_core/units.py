"""Unit conversions: nats, bits/dim and dB/dim for energies and log-probabilities; t, sigma, PSNR.

Conventions (paper and release): an energy is a negative log density in nats summed over all
``d = C*H*W`` dimensions; ``logp_nats = -energy_nats``. dB is only ever used per dimension:
``logp_db = 10 * log10(p) / d``. ``t`` is the noise variance per pixel, ``sigma = sqrt(t)``, and the
PSNR of a noisy input with peak 1 is ``psnr_db = -10 * log10(t)``.
"""

import math

import torch

LN2 = math.log(2.0)
LN10 = math.log(10.0)
DB_PER_BIT = 10.0 * math.log10(2.0)  # 3.0103 dB per bit
QUANTIZATION_BITS = 8  # [0, 1] data quantized to 256 levels


def nats_to_bits_per_dim(nats: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """Total nats -> bits per dimension (same sign)."""
    return nats / (d * LN2)


def bits_per_dim_to_nats(bits_per_dim: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """Bits per dimension -> total nats (same sign)."""
    return bits_per_dim * d * LN2


def nats_to_db_per_dim(nats: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """Total nats -> dB per dimension (same sign): ``10 * nats / (d ln 10)``."""
    return 10.0 * nats / (d * LN10)


def db_per_dim_to_nats(db_per_dim: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """dB per dimension -> total nats (same sign)."""
    return db_per_dim * d * LN10 / 10.0


def db_to_bits(db_per_dim: torch.Tensor | float) -> torch.Tensor | float:
    """dB/dim -> bits/dim (same sign); a factor ``log2(10) / 10 = 0.33219``."""
    return db_per_dim / DB_PER_BIT


def bits_to_db(bits_per_dim: torch.Tensor | float) -> torch.Tensor | float:
    """bits/dim -> dB/dim (same sign); a factor ``10 log10(2) = 3.0103``."""
    return bits_per_dim * DB_PER_BIT


def energy_nats_to_logp_db(energy_nats: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """Energy (nats, total) -> log p in dB/dim: ``-10 U / (d ln 10)``."""
    return -nats_to_db_per_dim(energy_nats, d)


def logp_db_to_energy_nats(logp_db: torch.Tensor | float, d: int) -> torch.Tensor | float:
    """log p in dB/dim -> energy in total nats."""
    return -db_per_dim_to_nats(logp_db, d)


def discrete_nll_bits_per_dim(
    energy_nats: torch.Tensor | float, d: int, bits: int = QUANTIZATION_BITS
) -> torch.Tensor | float:
    """Negative log-likelihood of quantized data in bits/dim: ``bits + U / (d ln 2)``.

    A density on [0, 1]^d, read as uniform within each of the 2^bits bins per pixel, gives each
    bin the probability ``p(x) * 2^(-bits * d)``: the release's "+8" (Table 2, "Continuous").
    """
    return bits + nats_to_bits_per_dim(energy_nats, d)


def gaussian_entropy_nats(d: int, variance: float) -> float:
    """Differential entropy of N(0, variance I_d) in nats: ``(d/2) ln(2 pi e variance)``."""
    return 0.5 * d * math.log(2.0 * math.pi * math.e * variance)


def psnr_db_to_t(psnr_db: torch.Tensor | float) -> torch.Tensor | float:
    """Input PSNR (peak 1) -> noise variance per pixel: ``t = 10^(-psnr/10)``."""
    if isinstance(psnr_db, torch.Tensor):
        return torch.pow(10.0, -psnr_db / 10.0)
    return 10.0 ** (-psnr_db / 10.0)


def t_to_psnr_db(t: torch.Tensor | float) -> torch.Tensor | float:
    """Noise variance per pixel -> input PSNR in dB (peak 1)."""
    if isinstance(t, torch.Tensor):
        return -10.0 * torch.log10(t)
    return -10.0 * math.log10(t)


def t_to_sigma(t: torch.Tensor | float) -> torch.Tensor | float:
    """Noise variance -> standard deviation."""
    return t**0.5


def sigma_to_t(sigma: torch.Tensor | float) -> torch.Tensor | float:
    """Noise standard deviation -> variance."""
    return sigma**2


def mse_to_psnr_db(mse: torch.Tensor | float) -> torch.Tensor | float:
    """Per-pixel mean squared error (peak 1) -> PSNR in dB."""
    return t_to_psnr_db(mse)
