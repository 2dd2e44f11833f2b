"""Closed forms of the Gaussian oracle for the analysis tests (independent of GaussianEnergy)."""

import math

import torch

import dsm_core as dc


def covariance(oracle: dc.GaussianEnergy) -> torch.Tensor:
    """Sigma = V diag(lam) V^T, (d, d) float64."""
    v = oracle.eigenvectors.double()
    return v @ torch.diag(oracle.eigenvalues.double()) @ v.T


def exact_energy_nats(oracle: dc.GaussianEnergy, y: torch.Tensor, t: float) -> torch.Tensor:
    """-log N(y; mu, Sigma + t I) by a Cholesky solve, (B,) float64."""
    cov = covariance(oracle) + t * torch.eye(oracle.d, dtype=torch.float64)
    centered = (y.double() - oracle.mean.double()).flatten(1)  # (B, d)
    solved = torch.linalg.solve(cov, centered.T).T
    _, logdet = torch.linalg.slogdet(cov)
    return 0.5 * (centered * solved).sum(1) + 0.5 * logdet + 0.5 * oracle.d * math.log(2 * math.pi)


def eigen_coords(oracle: dc.GaussianEnergy, x: torch.Tensor) -> torch.Tensor:
    """Coordinates of x - mu in the eigenbasis, (B, d) float64."""
    return (x.double() - oracle.mean.double()).flatten(1) @ oracle.eigenvectors.double()
