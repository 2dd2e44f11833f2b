"""Frozen configuration dataclasses of model, noise and loss, with a strict JSON round trip."""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

C = TypeVar("C")

Nonlinearity = Literal["gelu", "relu"]
Head = Literal["inner_product", "squared_norm", "score"]
HeatPoints = Literal["noise", "ascent"]
HeatStarts = Literal["batch", "textured"]
TimeTerm = Literal["none", "gaussian", "gaussian_log_t"]
MeanTerm = Literal["none", "gaussian"]
OutputScaling = Literal["none", "inverse_sigma"]
BoxTerm = Literal["none", "gaussian_tail"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the score UNet ``f(y, t)`` (reference-spec §1).

    Widths double per scale from ``base_width`` at full resolution; ``num_scales`` encoder blocks
    are followed by a middle block one scale coarser (the first block works at full resolution),
    so the input side must be divisible by ``2 ** num_scales``.
    """

    channels: int = 1
    base_width: int = 64
    num_scales: int = 3
    encoder_layers: int = 3  # per block
    middle_layers: int = 3
    decoder_layers: int = 3
    kernel_size: int = 3
    nonlinearity: Nonlinearity = "gelu"  # exact (erf) GELU as released; relu makes f homogeneous
    norm_eps: float = 1e-5
    embed_dim: int = 256  # width of the noise-level embedding e(t)
    num_frequencies: int = 32
    # released code, not paper: Fourier frequencies 1/embed_t_max .. 1/embed_t_min = 0.01 .. 1.
    # The paper's range is embed_t_min=1e-9, embed_t_max=1e3.
    embed_t_min: float = 1.0
    embed_t_max: float = 100.0
    # Option (not in the release): features of u = ln t rescaled to [0, 1] over
    # [embed_t_min, embed_t_max] (t clamped there), frequencies pi/2 .. F pi/2, so e(t) resolves
    # every decade of t; use with the training range, e.g. 1e-6 .. 1e3.
    embed_log_t: bool = False


@dataclass(frozen=True)
class EnergyConfig:
    """A complete model: image shape, network, and how its output becomes an energy."""

    image_size: int = 64  # square images, H = W
    unet: UNetConfig = field(default_factory=UNetConfig)
    # inner_product: U = <y, f>/2 (release), either sign: unbounded below along any ray where
    # <y, f> < 0; squared_norm: U = |f|^2/2 >= 0, 0 at y = 0 (bias-free network), so with
    # mean_term the flat image of each mean is the most probable (paper §2.3 names the form and
    # says it trains less well); score: no energy, f = grad_y (Table 1 baseline).
    head: Head = "inner_product"
    # gaussian: add the y-independent term (d/2) ln(2 pi (data_var + t)) + (d/2) g(ln(data_var +
    # t)), g a zero-initialised MLP, so the model starts as a normalised Gaussian in t
    # (data-notes.md). g's input is flat for t << data_var, so this term cannot follow the height
    # of the density's mode there. gaussian_log_t (issue 12) adds (d/2) h(ln t), h a second
    # zero-initialised MLP of ln t over [unet.embed_t_min, unet.embed_t_max]: with a head that is
    # 0 at the flat image (squared_norm), this is the only part of the flat image's energy that
    # can change with t.
    time_term: TimeTerm = "none"
    data_var: float = 0.07  # per-pixel variance of the data, used by time_term="gaussian"
    # inverse_sigma: divide the network's energy by sigma = sqrt(t + sigma_floor_t), so the UNet
    # output stays O(1) at every noise level (the release's "output scaling" option, off in the
    # released models). The floor keeps U(x, 0) finite; set it to the smallest trained t.
    output_scaling: OutputScaling = "none"
    sigma_floor_t: float = 1e-6
    # Deviation from the release (0 there): the network sees y - input_offset and the head is
    # <y - input_offset, f>/2. With a homogeneous network the energy then scales as a^2 along every
    # contrast axis input_offset + a (y - input_offset), so the constant image input_offset is its
    # extremum; with 0 that centre is the black image, outside the bulk of [0, 1] data.
    input_offset: float = 0.0
    # Deviation from the release ("none" there). The release's network normalises every layer by
    # its per-channel spatial mean, so f(y + c, t) = f(y, t) up to zero-padding borders, and the
    # inner-product energy is then linear in each channel's image mean: the denoiser passes the
    # mean through at every t (samples keep the mean of their initial noise) and the energy has no
    # lower bound along brightness. "gaussian": the network and the inner product see
    # y - mean_c(y) (each channel's spatial mean removed), and each channel's mean coordinate
    # u_c = sqrt(H W) mean_c(y) gets the exact energy of a noisy Gaussian,
    # (u_c - sqrt(H W) mu_c)^2 / (2 (H W v_c + t)) + ln(2 pi (H W v_c + t)) / 2, with mu_c and
    # v_c (the variance of a clean image's mean) learned, initialised at 1/2 and data_var.
    mean_term: MeanTerm = "none"
    # Deviation from the release (needs mean_term="gaussian"; issue 12). With the mean removed the
    # network is blind to brightness: p(x) factorises into p(mean) p(x - mean), so a dark image
    # may carry the texture of a mid-grey one and samples leave [0, 1] (held-out crops of mean
    # < 0.1 have pixel std 0.040, of mean 0.35-0.65 0.144). True: the channel means, as 2 m - 1,
    # enter the noise embedding through a bias-free linear map added to its first layer's
    # pre-activation, zero at start (so a model without it can be fine-tuned into one as the same
    # function). The network part stays 0 at a flat image, so the bound of squared_norm holds.
    mean_embedding: bool = False
    # Deviation from the release (issue 12): "gaussian_tail" adds the analytic energy
    # sum_i max(dist(y_i, [0, 1]) - box_margin sqrt(t), 0)^2 / (2 t) * box_var / (box_var + t),
    # zero on the box and within box_margin noise standard deviations of it. For data in
    # [0, 1]^d every noisy density obeys U_t(y) >= U_t(clamp(y)) + sum_i dist(y_i, [0, 1])^2 /
    # (2 t) (each pixel outside the box is at least that far from every clean image), so the
    # term is a lower bound the network need not learn. The margin keeps it off the noisy data
    # (a clipped pixel's noise is symmetric about 0 or 1: a term starting at the box asks the
    # network for a one-sided quadratic); the factor fades it above t ~ box_var, where p_t is
    # nearly Gaussian and the network already scores the distance (added there, the two together
    # pushed the probability-flow ODE's trajectories out). Without it a smooth model spreads the
    # mass of clipped pixels (0 or 255 in 23 % of the held-out crops) past the box, and
    # reverse-SDE samples leave [0, 1] in their darkest and brightest regions.
    box_term: BoxTerm = "none"
    box_margin: float = 3.0  # in noise standard deviations sqrt(t)
    box_var: float = 0.01  # noise variance per pixel at which the term is halved
    # The smallest noise variance the model was trained on (training sets it to noise.t_min).
    # Below it the model is evaluated at t_min: U(y, t) = U(y, t_min) for t < t_min, so log p at
    # t = 0 is the trained value, flat and continuous in t, never an extrapolation. 0: no floor
    # (folders saved before the field existed).
    t_min: float = 0.0

    @property
    def channels(self) -> int:
        return self.unet.channels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.unet.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class NoiseConfig:
    """Training distribution of noise levels: log-uniform t (p(t) ~ 1/t) on [t_min, t_max]."""

    t_min: float = 1e-9  # noise variance per pixel (input PSNR 90 dB)
    t_max: float = 1e3  # (input PSNR -30 dB)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the per-sample loss terms (paper eq. 8 / 42), and of the heat-equation term.

    ``heat_weight`` > 0 adds the squared residual of the heat equation
    (``losses.heat_residual``) at ``heat_images`` off-data points per batch: ``y = x + sqrt(s)
    z``, s log-uniform on [t_min, heat_max_var], scored at ``t = s 10^-u``, u ~ U(0,
    heat_decades), below the noise they carry (``losses.off_data_points``); x is a batch image
    or a persistent ascent chain (``heat_points``). Not in the paper or the release (issue 12:
    there U(y, t) is fitted only where p_t has mass, and gradient ascent finds images whose
    dU/dt at small t is far from what the heat equation asks).
    """

    time_weight: float = 1.0  # 0 gives single (denoising) score matching
    heat_weight: float = 0.0  # 0: no heat-equation term (the paper's loss)
    heat_images: int = 4  # off-data points per batch (per process under DDP)
    heat_decades: float = 3.0  # how far below its drawn noise variance a point is scored
    # noisier points are far from any image (std 10 noise scored at t = 0.01 gave residuals of
    # ~10, swamping the rest); ascent's images stay within about [-0.5, 1.5]
    heat_max_var: float = 0.1
    # "noise": x is a batch image; "ascent": x is the state of a persistent gradient-ascent
    # chain on log p (``losses.AscentChains``), where the model's spurious modes are
    heat_points: HeatPoints = "noise"
    heat_chains: int = 64  # chains per process; each visit advances heat_images of them
    heat_ascent_steps: int = 4  # ascent steps of 1e-2/d (the paper's, Fig. 13) per visit
    heat_restart: float = 0.004  # chance per visit that a chain restarts from a batch image
    # which batch images feed the heat term (as noisy points or as chain restarts): "batch" the
    # first heat_images; "textured" the heat_images with the highest Haar participation ratio,
    # as the quality bench picks its ascent starts (gradient ascent from textured crops ends in
    # the flat, not-yet-converged places where one-shot and ODE part most)
    heat_starts: HeatStarts = "batch"


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as nested plain dicts (JSON-ready: tuples become lists, as a JSON file
    reads them back, so a saved config compares equal to the one it was written from)."""
    return _json_ready(dataclasses.asdict(config))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from nested dicts, refusing unknown or ill-typed fields by name."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(f"{cls.__name__}.{name}", hints[name], value)
    return cls(**kwargs)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(where, inner[0], value)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(value) if origin is tuple else list(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, bool, str):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise TypeError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def apply_overrides(config: C, overrides: dict[str, Any]) -> C:
    """``dataclasses.replace`` with dotted keys into nested configs (``unet.base_width=32``).

    A key without a dot is looked up first in ``config`` and then in its nested dataclass fields,
    so ``base_width=32`` reaches ``EnergyConfig.unet.base_width``. Values keep the field's type.
    """
    result = config
    for key, value in overrides.items():
        result = _replace_path(result, _resolve_path(result, key), value)
    return result


def _resolve_path(config: Any, key: str) -> list[str]:
    names = {f.name for f in dataclasses.fields(config)}
    if "." in key or key in names:
        return key.split(".")
    for f in dataclasses.fields(config):
        sub = getattr(config, f.name)
        if dataclasses.is_dataclass(sub):
            try:
                return [f.name, *_resolve_path(sub, key)]
            except KeyError:
                continue
    raise KeyError(f"{type(config).__name__} has no field {key!r}")


def _replace_path(config: Any, path: list[str], value: Any) -> Any:
    fields = {f.name for f in dataclasses.fields(config)}
    head = path[0]
    if head not in fields:
        raise KeyError(f"{type(config).__name__} has no field {head!r}; known: {sorted(fields)}")
    if len(path) == 1:
        hint = typing.get_type_hints(type(config))[head]
        return dataclasses.replace(
            config, **{head: _coerce(f"{type(config).__name__}.{head}", hint, value)}
        )
    return dataclasses.replace(
        config, **{head: _replace_path(getattr(config, head), path[1:], value)}
    )
