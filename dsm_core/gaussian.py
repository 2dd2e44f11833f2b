"""The exact energy of Gaussian data N(mu, Sigma) at every noise level: an oracle and a baseline.

For x ~ N(mu, Sigma), y = x + sqrt(t) z is N(mu, Sigma + t I), so with Sigma = V diag(lam) V^T
``U(y, t) = sum_i (v_i . (y - mu))^2 / (2 (lam_i + t)) + (1/2) sum_i ln(2 pi (lam_i + t))``,
exactly normalised (K = 0). It serves as a ground truth in tests and as the full-covariance
Gaussian (PCA) density baseline.
"""

import math

import torch

from dsm_core.energy import BaseEnergy


class GaussianEnergy(BaseEnergy):
    """Exact energy of N(mean, V diag(eigenvalues) V^T) convolved with N(0, t I).

    Args:
        mean: (*image_shape) mean image.
        eigenvalues: (d,) covariance eigenvalues (>= 0).
        eigenvectors: (d, d) orthonormal columns, or None for the identity (diagonal covariance).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        eigenvalues: torch.Tensor,
        eigenvectors: torch.Tensor | None = None,
    ):
        super().__init__(tuple(mean.shape), log_norm_nats=0.0)
        d = mean.numel()
        if eigenvalues.shape != (d,):
            raise ValueError(f"eigenvalues must have shape ({d},), got {tuple(eigenvalues.shape)}")
        if eigenvectors is not None and eigenvectors.shape != (d, d):
            raise ValueError(f"eigenvectors must be ({d}, {d}), got {tuple(eigenvectors.shape)}")
        if (eigenvalues < 0).any():
            raise ValueError("covariance eigenvalues must be non-negative")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("eigenvalues", eigenvalues.clone())
        self.register_buffer("eigenvectors", None if eigenvectors is None else eigenvectors.clone())

    @classmethod
    def isotropic(cls, mean: torch.Tensor, variance: float) -> "GaussianEnergy":
        """N(mean, variance I)."""
        return cls(mean, torch.full((mean.numel(),), float(variance), dtype=mean.dtype))

    @classmethod
    def fit(cls, x: torch.Tensor, *, full_covariance: bool = True, min_var: float = 1e-6):
        """Maximum-likelihood Gaussian of images x (N, *image_shape) (float64 internally).

        ``full_covariance=False`` fits an isotropic Gaussian (one variance for all pixels).
        Eigenvalues are floored at ``min_var`` so that the density is proper on quantised data.
        """
        flat = x.flatten(1).double()  # (N, d)
        mean = flat.mean(dim=0)
        centered = flat - mean
        if not full_covariance:
            var = centered.square().mean().clamp_min(min_var).item()
            return cls.isotropic(mean.view(x.shape[1:]).float(), var)
        cov = centered.T @ centered / flat.shape[0]  # (d, d)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        return cls(
            mean.view(x.shape[1:]).float(),
            eigenvalues.clamp_min(min_var).float(),
            eigenvectors.float(),
        )

    def _coords(self, y: torch.Tensor) -> torch.Tensor:
        """Coordinates of y - mean in the eigenbasis, (B, d)."""
        centered = (y - self.mean).flatten(1)
        return centered if self.eigenvectors is None else centered @ self.eigenvectors

    def raw_energy(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        var = self.eigenvalues + t[:, None]  # (B, d)
        quadratic = 0.5 * (self._coords(y).square() / var).sum(dim=1)
        return quadratic + 0.5 * torch.log(2.0 * math.pi * var).sum(dim=1)  # (B,)

    def effective_dimensionality(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Exact d_eff(x, t) = E_z |x - D(y, t)|^2 / t of the optimal (linear) denoiser (B,).

        ``= t |(Sigma + t)^-1 (x - mu)|^2 + sum_i (lam_i / (lam_i + t))^2`` (paper eq. 11).
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1)  # (B or 1, 1)
        var = self.eigenvalues + t
        bias = (t * (self._coords(x) / var).square()).sum(dim=1)
        return bias + ((self.eigenvalues / var) ** 2).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples (n, *image_shape)."""
        u = torch.randn(n, self.d, generator=generator, dtype=self.mean.dtype)
        u = u * self.eigenvalues.sqrt()
        if self.eigenvectors is not None:
            u = u @ self.eigenvectors.T
        return self.mean + u.view(n, *self.image_shape)
