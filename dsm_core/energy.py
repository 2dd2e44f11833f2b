"""Energy models U(y, t) with their space and time scores, and the plain score-network baseline.

An energy is a negative log density of the noisy image y at noise variance t, in nats summed over
all ``d`` dimensions, including the log normalisation constant K (``log_norm_nats``).
"""

import math

import torch
from torch import nn

from dsm_core.config import EnergyConfig
from dsm_core.layers import log_t_unit
from dsm_core.noise import batch_t, tweedie_denoise
from dsm_core.unet import UNet


def parameter_dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    """(dtype, device) of a module's first floating parameter or buffer; float32 CPU for none."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.float32, torch.device("cpu")


class DenoisingModel(nn.Module):
    """Anything with ``grad_y`` (= -score) and the Miyasawa-Tweedie denoiser ``y - t grad_y``."""

    image_shape: tuple[int, ...]
    # The smallest noise variance the model was trained on: an evaluation at t < t_min is made at
    # t_min, so the model is flat and continuous in t below its trained range (0: no floor).
    t_min: float = 0.0
    # Where it was loaded from: a folder, or a Hub id (``owner/name@revision``); set by
    # ``checkpoint.load_model_folder``, None for a model built in memory.
    source: str | None = None

    @property
    def d(self) -> int:
        """Dimension of one image."""
        return math.prod(self.image_shape)

    def check_images(
        self, y: torch.Tensor, name: str = "y", *, move: bool = True, finite: bool = True
    ) -> torch.Tensor:
        """Images as this model takes them: the one place inputs are normalised and checked.

        Accepted: a tensor, numpy array or (nested) list of shape (B, *image_shape), B >= 1.
        Floating values (float16/32/64, bfloat16) are cast to the model's dtype; uint8 is read
        as 8-bit pixels and scaled by 1/255 to [0, 1] (as ``dsm_core.images.pixels_to_tensor``).
        Other integer, bool and complex inputs are refused (their scale is ambiguous).

        Args:
            y: the images.
            name: the argument's name in error messages.
            move: also move to the model's device (callers that batch on another device pass
                False and move each batch themselves).
            finite: refuse NaN and infinite values. Training passes its own noisy batches with
                False (``losses.score_matching_terms``), so a non-finite batch becomes a
                non-finite loss that the training step handles, on every DDP rank alike.

        Returns:
            (B, *image_shape) of the model's dtype (and device with ``move``); the input itself
            when nothing needed changing (autograd graphs are kept).

        Raises:
            TypeError: not array-like, or a dtype other than floating point or uint8.
            ValueError: wrong shape, or NaN / infinite values.
        """
        expected = f"(B, {', '.join(map(str, self.image_shape))})"
        if not torch.is_tensor(y):
            try:
                y = torch.as_tensor(y)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(
                    f"{name}: expected a float tensor {expected} in [0, 1], got {type(y).__name__}"
                ) from exc
        dtype, device = parameter_dtype_device(self)
        if y.dtype == torch.uint8:
            y = y.to(dtype).div_(255.0)  # 8-bit pixels -> [0, 1]
        elif not y.is_floating_point():
            raise TypeError(
                f"{name}: expected floating-point images in [0, 1] (or uint8 pixels), got {y.dtype}"
            )
        if y.ndim != 1 + len(self.image_shape) or tuple(y.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"{name}: expected images of shape {expected}, got {tuple(y.shape)}")
        y = y.to(dtype=dtype, device=device if move else y.device)
        if finite and not torch.isfinite(y.detach()).all():
            raise ValueError(f"{name}: images contain NaN or infinite values")
        return y

    def grad_y(self, y: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """dU/dy (B, *image_shape), the negative score; y and t (a float or (B,)) are checked."""
        y = self.check_images(y)
        return self._grad_y(y, batch_t(t, y))

    def _grad_y(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dU/dy of checked images y (B, *image_shape) and noise variances t (B,)."""
        raise NotImplementedError

    def denoise(self, y: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """D(y, t) = y - t grad_y U(y, t), the estimate of E[x | y] (B, *image_shape) (eq. 37)."""
        y = self.check_images(y)
        t = batch_t(t, y)
        return tweedie_denoise(y, t, self._grad_y(y, t))


class BaseEnergy(DenoisingModel):
    """U(y, t) = raw_energy(y, t) + K, with scores from one autograd call.

    Subclasses implement ``raw_energy``; this class adds the constant, differentiates and denoises.
    """

    def __init__(self, image_shape: tuple[int, ...], log_norm_nats: float = 0.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.log_norm_nats = float(log_norm_nats)
        self.metadata: dict = {}

    def raw_energy(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unnormalised energy in nats, y (B, *image_shape), t (B,) >= t_min -> (B,).

        With the inner-product head it is ``U(y, t) = <y, s(y, t)>/2`` (paper eq. 10), s the UNet.
        """
        raise NotImplementedError

    def energy(self, y: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Normalised energy U(y, t) in nats (B,); safe under ``torch.inference_mode``."""
        y = self.check_images(y)
        t = batch_t(t, y).clamp_min(self.t_min)  # (B,) flat below the trained range
        return self.raw_energy(y, t) + self.log_norm_nats

    def energy_and_scores(
        self, y: torch.Tensor, t: torch.Tensor | float, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energy and both partial derivatives from one autograd call.

        Args:
            y: noisy images (B, *image_shape).
            t: noise variance per pixel, a float or (B,).
            create_graph: keep the graph of the derivatives (for training by double backprop,
                or for differentiating a function of the scores).

        Returns:
            energy_nats (B,) including K, grad_y = dU/dy (B, *image_shape), grad_t = dU/dt (B,).
            Without ``create_graph`` all three are detached.
        """
        y = self.check_images(y)
        return self._energy_and_grads(y, batch_t(t, y), create_graph, with_grad_t=True)

    def _energy_and_grads(
        self, y: torch.Tensor, t: torch.Tensor, create_graph: bool, with_grad_t: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """U, grad_y and (``with_grad_t``) grad_t of checked y (B, *image_shape) and t (B,): the
        public methods and ``losses.score_matching_terms`` check their inputs once, then call
        this."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError("scores need autograd: call outside torch.inference_mode()")
        with torch.enable_grad():
            if not y.requires_grad:
                y = y.detach().requires_grad_(True)
            if with_grad_t and not t.requires_grad:
                t = t.detach().requires_grad_(True)
            # flat below the trained range: grad_t is 0 there
            energy = self.raw_energy(y, t.clamp_min(self.t_min)) + self.log_norm_nats  # (B,)
            inputs = (y, t) if with_grad_t else (y,)
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
        # grad_y: (B, *image_shape), grad_t: (B,)
        grad_t = grads[1] if with_grad_t else None
        if not create_graph:
            energy = energy.detach()
        return energy, grads[0], grad_t

    def _grad_y(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._energy_and_grads(y, t, create_graph=False, with_grad_t=False)[1]


class GaussianTimeTerm(nn.Module):
    """y-independent energy ``(d/2) [ln(2 pi (v + t)) + g(ln(v + t)) + h(u(t))]`` nats.

    g and h (optional) are zero-initialised MLPs.

    With it, a model whose network part is quadratic is a normalised Gaussian at every t from the
    first step, so the time score at large t need not be synthesised through large network outputs
    (see data-notes.md). It leaves grad_y (and the denoiser) unchanged.

    g sees ln(v + t), which hardly changes for t << v. ``log_t_range=(lo, hi)`` adds h, an MLP of
    ``u(t) = 2 (ln t - ln lo) / (ln hi - ln lo) - 1`` (t clamped to [lo, hi]), so the term can vary
    over every decade of the trained range. For Gaussian data with covariance eigenvalues
    lambda_i the exact term is ``(1/2) sum_i ln(2 pi (lambda_i + t))``; it keeps changing down to
    t ~ min lambda_i, far below v for natural images (issue 12: without h, one-shot log p of
    smooth crops stayed 2-5 dB/dim below the probability-flow ODE's).
    """

    def __init__(
        self,
        d: int,
        data_var: float,
        hidden: int = 32,
        log_t_range: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.d = d
        self.data_var = data_var
        # No bias on the last layers: a constant energy has zero derivative in y and t, so it
        # would never receive a gradient (it is K's job), and DDP fails on parameters without one.
        self.correction = _zero_output_mlp(hidden)
        self.log_range = None if log_t_range is None else tuple(math.log(v) for v in log_t_range)
        self.log_t_correction = None if log_t_range is None else _zero_output_mlp(hidden)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) -> (B,) nats."""
        log_var = torch.log(self.data_var + t)  # (B,)
        g = self.correction(log_var[:, None])[:, 0]
        if self.log_t_correction is not None:
            u = 2.0 * log_t_unit(t, self.log_range) - 1.0  # (B,) in [-1, 1]
            g = g + self.log_t_correction(u[:, None])[:, 0]
        return 0.5 * self.d * (math.log(2.0 * math.pi) + log_var + g)


def _zero_output_mlp(hidden: int) -> nn.Sequential:
    """1 -> hidden (SiLU) -> 1 with a zero, bias-free last layer: the zero function at start."""
    mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 1, bias=False))
    nn.init.zeros_(mlp[2].weight)
    return mlp


class ImageMeanTerm(nn.Module):
    """Exact energy of each channel's image mean under a learned Gaussian, noisy at level t.

    The mean coordinate of channel c is ``u_c = sqrt(H W) mean_c(y)`` (unit-norm direction, so
    noise of variance t per pixel adds variance t to it). For clean means ``mean_c(x) ~ N(mu_c,
    v_c)`` the noisy marginal gives, per image, ``sum_c (u_c - sqrt(H W) mu_c)^2 / (2 (H W v_c +
    t)) + ln(2 pi (H W v_c + t)) / 2`` nats: grad_y is the exact Gaussian score along each mean
    direction, and grad_t its time score (paper eqs. 2 and 4 for one Gaussian coordinate).
    """

    def __init__(self, image_shape: tuple[int, int, int], initial_var: float):
        super().__init__()
        channels, height, width = image_shape
        self.num_pixels = height * width
        self.mean = nn.Parameter(torch.full((channels,), 0.5))  # mu_c, pixel units
        self.log_var = nn.Parameter(torch.full((channels,), math.log(initial_var)))  # ln v_c

    def forward(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Channel means (B, C) and t (B,) -> (B,) nats."""
        var = self.num_pixels * torch.exp(self.log_var) + t[:, None]  # (B, C) of u_c
        offset = math.sqrt(self.num_pixels) * (means - self.mean)  # (B, C)
        return (0.5 * offset.square() / var + 0.5 * torch.log(2.0 * math.pi * var)).sum(dim=1)


def box_energy(y: torch.Tensor, t: torch.Tensor, margin: float, box_var: float) -> torch.Tensor:
    """The box term of ``EnergyConfig.box_term``: zero near [0, 1]^d, a Gaussian tail beyond.

    ``sum_i max(dist(y_i, [0, 1]) - margin sqrt(t), 0)^2 / (2 t) * box_var / (box_var + t)``
    nats: a lower bound on how much less probable a noisy image is than clamp(y) when the clean
    data lie in the box (``U_t(y) >= U_t(clamp(y)) + sum_i dist^2 / (2 t)``).

    Args:
        y: images (B, *image_shape), pixel units.
        t: noise variance per pixel (B,), > 0.
        margin: noise standard deviations beyond the box where the term starts, >= 0.
        box_var: noise variance at which the term is halved, > 0.

    Returns:
        (B,) nats.
    """
    dist = (-y).clamp_min(0.0) + (y - 1.0).clamp_min(0.0)  # (B, *image_shape)
    reach = margin * torch.sqrt(t).reshape(-1, *([1] * (y.dim() - 1)))  # (B, 1, ..., 1)
    excess = (dist - reach).clamp_min(0.0).square().flatten(1).sum(dim=1)  # (B,)
    return excess * box_var / (2.0 * t * (box_var + t))


class EnergyModel(BaseEnergy):
    """The UNet energy: U(y, t) = <y, f(y, t)>/2 + K (release) or |f|^2/2 + K (paper's option).

    Options (off in the release): the network part divided by sqrt(t + sigma_floor_t)
    (``output_scaling="inverse_sigma"``), an analytic Gaussian time term (``time_term``), and an
    analytic term that is zero near [0, 1]^d and grows beyond it (``box_term``, ``box_energy``).
    The network and the inner product see ``y - config.input_offset`` (0 in the release), or,
    with ``mean_term="gaussian"``, y with each channel's mean removed, the means then scored by
    ``ImageMeanTerm``.
    Every part sees ``max(t, config.t_min)``: below the smallest trained noise variance the energy
    is constant in t (grad_t = 0 there), so U(y, 0) = U(y, t_min) is the trained value.
    """

    def __init__(self, config: EnergyConfig, log_norm_nats: float = 0.0):
        if config.head == "score":
            raise ValueError("head='score' is a ScoreModel, not an energy")
        super().__init__(config.image_shape, log_norm_nats)
        self.config = config
        self.t_min = config.t_min
        self.unet = UNet(config.unet)
        if config.image_size % self.unet.min_divisor:
            raise ValueError(
                f"image_size {config.image_size} must be a multiple of "
                f"{self.unet.min_divisor} for num_scales={config.unet.num_scales}"
            )
        log_t_range = (config.unet.embed_t_min, config.unet.embed_t_max)
        self.time_term = (
            None
            if config.time_term == "none"
            else GaussianTimeTerm(
                self.d,
                config.data_var,
                log_t_range=log_t_range if config.time_term == "gaussian_log_t" else None,
            )
        )
        if config.mean_term == "gaussian" and config.input_offset != 0.0:
            raise ValueError(
                "mean_term='gaussian' removes each channel's mean before the network; "
                f"input_offset must be 0, got {config.input_offset}"
            )
        self.mean_term = (
            ImageMeanTerm(config.image_shape, config.data_var)
            if config.mean_term == "gaussian"
            else None
        )
        if config.box_term != "none" and not (config.box_margin >= 0 and config.box_var > 0):
            raise ValueError(
                f"box_term={config.box_term!r} needs box_margin >= 0 and box_var > 0, got "
                f"{config.box_margin} and {config.box_var}"
            )
        if config.mean_embedding and config.mean_term != "gaussian":
            raise ValueError("mean_embedding=True needs mean_term='gaussian'")
        self.mean_embedding = None
        if config.mean_embedding:  # channel means -> the embedding's first pre-activation
            self.mean_embedding = nn.Linear(config.channels, config.unet.embed_dim, bias=False)
            nn.init.zeros_(self.mean_embedding.weight)

    def raw_energy(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        box = (
            box_energy(y, t, self.config.box_margin, self.config.box_var)
            if self.config.box_term != "none"
            else None
        )
        offset = None
        if self.mean_term is not None:
            means = y.mean(dim=(2, 3))  # (B, C)
            y = y - means[:, :, None, None]
            if self.mean_embedding is not None:
                offset = self.mean_embedding(2.0 * means - 1.0)  # (B, E)
        else:
            y = y - self.config.input_offset
        f = self.unet(y, t, offset)  # (B, C, H, W)
        if self.config.head == "inner_product":
            energy = 0.5 * (y * f).flatten(1).sum(dim=1)  # (B,)
        else:
            energy = 0.5 * f.square().flatten(1).sum(dim=1)
        if self.config.output_scaling == "inverse_sigma":
            energy = energy / torch.sqrt(t + self.config.sigma_floor_t)
        if self.time_term is not None:
            energy = energy + self.time_term(t)
        if self.mean_term is not None:
            energy = energy + self.mean_term(means, t)
        if box is not None:
            energy = energy + box
        return energy


class ScoreModel(DenoisingModel):
    """Table 1's score-network baseline: grad_y = f(y, t), so D = y - t f. No energy."""

    def __init__(self, config: EnergyConfig):
        if config.head != "score":
            raise ValueError(f"ScoreModel needs head='score', got {config.head!r}")
        if config.mean_term != "none":
            raise ValueError("mean_term is an energy option; a score model has no energy")
        super().__init__()
        self.image_shape = config.image_shape
        self.config = config
        self.t_min = config.t_min
        self.metadata: dict = {}
        self.unet = UNet(config.unet)

    def _grad_y(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.clamp_min(self.t_min)  # (B,) flat below the trained range
        return self.unet(y - self.config.input_offset, t)


def model_from_config(config: EnergyConfig, log_norm_nats: float = 0.0) -> EnergyModel | ScoreModel:
    """The model class a config describes (energy heads -> EnergyModel, 'score' -> ScoreModel)."""
    if config.head == "score":
        return ScoreModel(config)
    return EnergyModel(config, log_norm_nats)
