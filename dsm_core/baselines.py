"""Classical density (bits/dim) and denoising (PSNR) baselines, and the paper's qualitative checks.

Density baselines are energies like the learned model, so every NLL goes through the same
``nll_bits_per_dim`` (discrete convention, +8 bits): the isotropic and full-covariance Gaussians
(``GaussianEnergy``) and a full-covariance Gaussian mixture fitted with scikit-learn and evaluated
exactly, at any noise level, by ``GaussianMixtureEnergy``. The lossless PNG rate is an
actual code length. Denoising baselines wrap scikit-image's wavelet (BayesShrink) and
non-local means denoisers. The qualitative checks of paper §3.2-3.3 (Fig. 4) live with their
probes: ``analysis.affine`` (brightness, contrast) and ``analysis.sparsity`` (smoothness).
"""

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from dsm_core import units
from dsm_core.analysis.logp import nll_bits_per_dim
from dsm_core.energy import BaseEnergy
from dsm_core.noise import add_noise

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
"""``denoiser(y, t) -> x_hat``: noisy images (B, C, H, W) at noise variance t -> estimates."""


# ----------------------------------------------------------------------------- lossless coding


def png_bits_per_dim(
    images: np.ndarray, *, compress_level: int = 9, optimize: bool = True
) -> np.ndarray:
    """Lossless PNG code length of each 8-bit image in bits/dim: ``8 * bytes / (C H W)``.

    The whole file (signature, headers, checksums) is counted, as a file on disk would be.

    Args:
        images: uint8 (N, C, H, W) with C = 1 (mode "L") or C = 3 (mode "RGB").
        compress_level: zlib level passed to Pillow's PNG encoder (0-9).
        optimize: Pillow's ``optimize`` flag (extra search for the smallest encoding).

    Returns:
        bits per dimension (N,), float64.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {images.shape}"
        )
    d = math.prod(images.shape[1:])
    out = np.empty(len(images), dtype=np.float64)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG", optimize=optimize, compress_level=compress_level)
        out[i] = 8.0 * buffer.getbuffer().nbytes / d
    return out


# ----------------------------------------------------------------------------- Gaussian mixture


class GaussianMixtureEnergy(BaseEnergy):
    """Exact energy of a Gaussian mixture sum_k w_k N(mu_k, Sigma_k) convolved with N(0, t I).

    ``U(y, t) = -log sum_k w_k N(y; mu_k, Sigma_k + t I)`` in nats, exactly normalised (no log
    normalisation constant), with each ``Sigma_k = V_k diag(lam_k) V_k^T`` so every t costs one
    projection per component.
    Its denoiser ``y - t grad_y U`` is the exact posterior mean under the mixture.

    Args:
        weights: (K,) mixture weights, positive, summing to 1.
        means: (K, *image_shape) component means.
        eigenvalues: (K, d) covariance eigenvalues (> 0).
        eigenvectors: (K, d, d) orthonormal columns per component.
    """

    def __init__(
        self,
        weights: torch.Tensor,
        means: torch.Tensor,
        eigenvalues: torch.Tensor,
        eigenvectors: torch.Tensor,
    ):
        super().__init__(tuple(means.shape[1:]), log_norm_nats=0.0)
        k, d = weights.shape[0], math.prod(means.shape[1:])
        expected = {
            "weights": (weights, (k,)),
            "eigenvalues": (eigenvalues, (k, d)),
            "eigenvectors": (eigenvectors, (k, d, d)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")
        if (weights <= 0).any() or (eigenvalues <= 0).any():
            raise ValueError("mixture weights and covariance eigenvalues must be positive")
        self.register_buffer("log_weights", weights.log())
        self.register_buffer("means", means.reshape(k, d).clone())
        self.register_buffer("eigenvalues", eigenvalues.clone())
        self.register_buffer("eigenvectors", eigenvectors.clone())

    @property
    def num_components(self) -> int:
        return self.log_weights.shape[0]

    @classmethod
    def from_sklearn(cls, mixture, image_shape: Sequence[int]) -> "GaussianMixtureEnergy":
        """From a fitted ``sklearn.mixture.GaussianMixture`` with ``covariance_type="full"``.

        Its covariances already include ``reg_covar``; they are diagonalised in float64 and
        stored in float32, like ``GaussianEnergy``.
        """
        if mixture.covariance_type != "full":
            raise ValueError(f"need covariance_type='full', got {mixture.covariance_type!r}")
        covariances = torch.from_numpy(np.asarray(mixture.covariances_, dtype=np.float64))
        eigenvalues, eigenvectors = torch.linalg.eigh(covariances)  # (K, d), (K, d, d)
        means = torch.from_numpy(np.asarray(mixture.means_, dtype=np.float64))
        return cls(
            torch.from_numpy(np.asarray(mixture.weights_, dtype=np.float64)).float(),
            means.reshape(-1, *image_shape).float(),
            eigenvalues.float(),
            eigenvectors.float(),
        )

    def raw_energy(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # computed in the buffers' dtype (float32 from sklearn), returned in y's
        centered = y.flatten(1)[:, None, :].to(self.means.dtype) - self.means  # (B, K, d)
        coords = torch.einsum("bki,kij->bkj", centered, self.eigenvectors)  # (B, K, d)
        var = self.eigenvalues + t.to(self.means.dtype)[:, None, None]  # (B, K, d)
        log_component = -0.5 * (coords.square() / var + torch.log(2.0 * math.pi * var)).sum(dim=2)
        return -torch.logsumexp(self.log_weights + log_component, dim=1).to(y.dtype)  # (B,)


def fit_gaussian_mixture(
    x: torch.Tensor,
    num_components: int,
    *,
    reg_covar: float = 1e-4,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
) -> GaussianMixtureEnergy:
    """Fit a full-covariance Gaussian mixture to images by EM (scikit-learn, k-means init).

    ``metadata`` of the result records ``num_iterations``, ``converged``, ``fit_seconds`` and
    ``reg_covar``. EM cost per iteration is about ``4 K N d^2`` flops; numpy's BLAS threads are
    whatever the caller allows (e.g. ``threadpoolctl.threadpool_limits``).

    Args:
        x: training images (N, *image_shape), values in [0, 1].
        num_components: K.
        reg_covar: variance added to every covariance's diagonal (floor of the eigenvalues).
        max_iter: EM iterations at most.
        tol: EM stops when the mean log-likelihood per image improves by less than this (nats).
        seed: seed of the k-means initialisation.

    Returns:
        the fitted mixture as an exact energy.
    """
    from sklearn.mixture import GaussianMixture

    start = time.perf_counter()
    mixture = GaussianMixture(
        n_components=num_components,
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    mixture.fit(x.flatten(1).double().numpy())
    energy = GaussianMixtureEnergy.from_sklearn(mixture, x.shape[1:])
    energy.metadata = {
        "num_components": num_components,
        "reg_covar": reg_covar,
        "num_iterations": int(mixture.n_iter_),
        "converged": bool(mixture.converged_),
        "fit_seconds": time.perf_counter() - start,
    }
    return energy


@dataclass(frozen=True)
class MixtureSelection:
    """A Gaussian mixture whose number of components was chosen by held-out likelihood.

    Attributes:
        energy: the chosen mixture (fitted on the fit split only).
        num_components: its K.
        val_nll_bits_per_dim: mean discrete NLL of the validation images per candidate K.
        fits: ``metadata`` of every candidate's fit, in candidate order.
    """

    energy: GaussianMixtureEnergy = field(repr=False)
    num_components: int
    val_nll_bits_per_dim: dict[int, float]
    fits: list[dict]


def select_gaussian_mixture(
    x_fit: torch.Tensor,
    x_val: torch.Tensor,
    candidates: Sequence[int] = (4, 8, 16),
    *,
    reg_covar: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> MixtureSelection:
    """Fit one mixture per candidate K on ``x_fit``; keep the best by NLL on ``x_val``.

    Args:
        x_fit: images to fit on (N, *image_shape) in [0, 1].
        x_val: held-out images of the same distribution (M, *image_shape), e.g. a validation
            split of the training set (never the test set).
        candidates: numbers of components to try.
        reg_covar, max_iter, seed: as ``fit_gaussian_mixture``.
        progress: called with each fit's metadata (plus ``val_nll_bits_per_dim``) when it ends.

    Returns:
        a ``MixtureSelection``.
    """
    if not candidates:
        raise ValueError("candidates is empty")
    best: GaussianMixtureEnergy | None = None
    val_nll: dict[int, float] = {}
    fits = []
    for num_components in candidates:
        energy = fit_gaussian_mixture(
            x_fit, num_components, reg_covar=reg_covar, max_iter=max_iter, seed=seed
        )
        val_nll[num_components] = nll_bits_per_dim(energy, x_val).mean().item()
        fits.append({**energy.metadata, "val_nll_bits_per_dim": val_nll[num_components]})
        if progress is not None:
            progress(fits[-1])
        if best is None or val_nll[num_components] < val_nll[best.num_components]:
            best = energy
    return MixtureSelection(best, best.num_components, val_nll, fits)


# ----------------------------------------------------------------------------- denoising


def noisy_copies(
    x: torch.Tensor, psnr_in_db: Sequence[float], generator: torch.Generator
) -> torch.Tensor:
    """One fixed noise draw per image and level: ``y = x + sqrt(t) z``, ``t = 10^(-psnr/10)``.

    The draws depend only on the generator's state, the number of images and the levels, so every
    method denoises exactly the same noisy images.

    Args:
        x: clean images (B, C, H, W) in [0, 1].
        psnr_in_db: input PSNRs (L,) in dB (peak 1).
        generator: CPU source of z; level by level, all images at once.

    Returns:
        noisy images (L, B, C, H, W), x's dtype, not clipped.
    """
    out = torch.empty(len(psnr_in_db), *x.shape, dtype=x.dtype)
    for j, psnr_db in enumerate(psnr_in_db):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        out[j] = add_noise(x, float(units.psnr_db_to_t(float(psnr_db))), z)
    return out


def psnr_of_mean_mse_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """``-10 log10`` of the per-pixel MSE averaged over images (Table 1 convention), peak 1.

    Args:
        x_hat: estimates (B, *image_shape).
        x: clean images, same shape.

    Returns:
        PSNR in dB (inf when x_hat == x).
    """
    if x_hat.shape != x.shape:
        raise ValueError(f"shape mismatch: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    mse = (x_hat.double() - x.double()).flatten(1).square().mean(dim=1)  # (B,)
    return units.mse_to_psnr_db(mse.mean()).item()  # inf for a perfect estimate


def _per_image(y: torch.Tensor, fn: Callable[[np.ndarray, int | None], np.ndarray]) -> torch.Tensor:
    """Apply a 2-D (or channels-last colour) numpy denoiser to each image of y (B, C, H, W)."""
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1 or 3, H, W), got {tuple(y.shape)}")
    out = torch.empty_like(y)
    for i, image in enumerate(y.double().numpy()):
        if image.shape[0] == 1:
            out[i, 0] = torch.from_numpy(np.asarray(fn(image[0], None)))
        else:
            result = np.asarray(fn(image.transpose(1, 2, 0), -1))  # (H, W, 3)
            out[i] = torch.from_numpy(result.transpose(2, 0, 1).copy())
    return out


def wavelet_denoise(
    y: torch.Tensor,
    t: float,
    *,
    wavelet: str = "db1",
    method: str = "BayesShrink",
    mode: str = "soft",
) -> torch.Tensor:
    """scikit-image ``denoise_wavelet`` of each image, noise std given as ``sqrt(t)``.

    ``rescale_sigma=True`` (so sigma is in the units of y); the output is not clipped.

    Args:
        y: noisy images (B, C, H, W).
        t: noise variance per pixel.
        wavelet: a PyWavelets name.
        method: "BayesShrink" or "VisuShrink".
        mode: "soft" or "hard" thresholding.

    Returns:
        denoised images (B, C, H, W), y's dtype.
    """
    from skimage.restoration import denoise_wavelet

    sigma = math.sqrt(t)
    return _per_image(
        y,
        lambda image, channel_axis: denoise_wavelet(
            image,
            sigma=sigma,
            wavelet=wavelet,
            mode=mode,
            method=method,
            rescale_sigma=True,
            channel_axis=channel_axis,
        ),
    )


def nl_means_denoise(
    y: torch.Tensor,
    t: float,
    *,
    h_factor: float = 0.8,
    patch_size: int = 5,
    patch_distance: int = 6,
) -> torch.Tensor:
    """scikit-image ``denoise_nl_means`` (fast mode) of each image, noise std ``sqrt(t)``.

    The filter strength is ``h = h_factor * sigma`` (scikit-image suggests 0.8 in fast mode);
    sigma is given, so patch distances are corrected for the noise. Not clipped.

    Args:
        y: noisy images (B, C, H, W).
        t: noise variance per pixel.
        h_factor: h / sigma.
        patch_size: patch side in pixels.
        patch_distance: search radius in pixels.

    Returns:
        denoised images (B, C, H, W), y's dtype.
    """
    from skimage.restoration import denoise_nl_means

    sigma = math.sqrt(t)
    return _per_image(
        y,
        lambda image, channel_axis: denoise_nl_means(
            image,
            patch_size=patch_size,
            patch_distance=patch_distance,
            h=h_factor * sigma,
            sigma=sigma,
            fast_mode=True,
            channel_axis=channel_axis,
        ),
    )


def tune_denoiser(
    make_denoiser: Callable[[object], Denoiser],
    values: Sequence[object],
    x: torch.Tensor,
    psnr_in_db: float,
    generator: torch.Generator,
) -> tuple[object, dict[str, float]]:
    """Choose a denoiser parameter by output PSNR on a few (training) images at one noise level.

    Args:
        make_denoiser: ``value -> denoiser(y, t)``.
        values: candidate parameter values.
        x: clean images (B, C, H, W) in [0, 1], not the test images.
        psnr_in_db: the input PSNR to tune at.
        generator: source of the (one) noise draw shared by all candidates.

    Returns:
        the best value and the output PSNR (dB, PSNR of the mean MSE) of every value by ``str``.
    """
    if not values:
        raise ValueError("values is empty")
    t = units.psnr_db_to_t(float(psnr_in_db))
    y = noisy_copies(x, [psnr_in_db], generator)[0]
    scores = {str(v): psnr_of_mean_mse_db(make_denoiser(v)(y, t), x) for v in values}
    best = max(values, key=lambda v: scores[str(v)])
    return best, scores
