"""log p of images under contrast and brightness changes, log p(a x + b), and the checks of Fig. 4
(left/middle) built on it."""

from collections.abc import Sequence

import torch

from dsm_core.analysis._common import Progress, batch_size_for, check_images, chunks, model_device
from dsm_core.energy import BaseEnergy
from dsm_core.units import energy_nats_to_logp_db


def affine_logp_db(
    model: BaseEnergy,
    x: torch.Tensor,
    a: torch.Tensor | list[float],
    b: torch.Tensor | list[float],
    *,
    t: float = 0.0,
    clip: bool = False,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """log p(a x + b) in dB/dim over a grid of contrasts a and brightness offsets b (Fig. 4).

    The paper (reference-spec §4.5) uses ``a = b = linspace(0, 1, 101)``, t = 0, no clipping, and
    shows only ``a + b <= 1`` (where a x + b stays in [0, 1] for x in [0, 1]).

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape) in [0, 1].
        a: contrasts (A,).
        b: offsets (Bg,).
        t: noise variance at which the energy is evaluated (0: the clean density).
        clip: clip ``a x + b`` to [0, 1] before evaluating (the paper does not).
        batch_size: transformed images per forward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, total)`` after each image and contrast value (B * A calls).

    Returns:
        log p in dB/dim, (B, A, Bg) on the CPU; for one image use ``affine_logp_db_grid``.
    """
    x = check_images(model, x)
    device = model_device(model, device)
    a = torch.as_tensor(a, dtype=x.dtype).reshape(-1)
    b = torch.as_tensor(b, dtype=x.dtype).reshape(-1)
    out = torch.empty(x.shape[0], a.numel(), b.numel(), dtype=torch.float64)
    # all (a, b) pairs of one image, flattened a-major
    pair_a = a.repeat_interleave(b.numel())  # (A*Bg,)
    pair_b = b.repeat(a.numel())  # (A*Bg,)
    total = x.shape[0] * a.numel()
    done = 0
    with torch.inference_mode():
        for i in range(x.shape[0]):
            image = x[i : i + 1].to(device)
            values = torch.empty(pair_a.numel(), dtype=torch.float64)
            for rows in chunks(pair_a.numel(), batch_size_for(model.d, batch_size)):
                sa = pair_a[rows].to(device).view(-1, *([1] * (x.ndim - 1)))
                sb = pair_b[rows].to(device).view(-1, *([1] * (x.ndim - 1)))
                y = sa * image + sb  # (n, C, H, W)
                if clip:
                    y = y.clamp(0.0, 1.0)
                values[rows] = model.energy(y, t).double().cpu()
                if progress is not None:
                    row_done = i * a.numel() + rows.stop // b.numel()
                    while done < row_done:
                        done += 1
                        progress(done, total)
            out[i] = energy_nats_to_logp_db(values, model.d).view(a.numel(), b.numel())
    return out


def affine_logp_db_grid(
    model: BaseEnergy,
    image: torch.Tensor,
    a: torch.Tensor | list[float],
    b: torch.Tensor | list[float],
    **kwargs,
) -> torch.Tensor:
    """log p(a x + b) in dB/dim of one image over the (a, b) grid, (A, Bg) (Fig. 4 left).

    ``image`` is (*image_shape) or (1, *image_shape); keyword arguments as ``affine_logp_db``.
    """
    if image.ndim == len(model.image_shape):
        image = image[None]
    if image.shape[0] != 1:
        raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
    return affine_logp_db(model, image, a, b, **kwargs)[0]


def contrast_slice_logp_db(
    model: BaseEnergy,
    x: torch.Tensor,
    a: torch.Tensor | list[float],
    b: float = 0.5,
    **kwargs,
) -> torch.Tensor:
    """log p(a x + b) in dB/dim for many images at one offset b, (B, A) (Fig. 4 middle).

    The paper's slice is ``b = 0.5`` with ``a`` in [0, 0.5]; keyword arguments as
    ``affine_logp_db``.
    """
    return affine_logp_db(model, x, a, [b], **kwargs)[:, :, 0]


def affine_in_range(
    x: torch.Tensor, a: torch.Tensor | list[float], b: torch.Tensor | list[float]
) -> torch.Tensor:
    """Whether ``a x + b`` stays inside [0, 1] at every pixel, (B, A, Bg) bool (no model needed).

    Where it does not, log p(a x + b) scores an image outside the data range; the paper shows
    only ``a + b <= 1`` (a, b >= 0), where every image in [0, 1] stays inside.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    a = torch.as_tensor(a, dtype=torch.float64).reshape(1, -1, 1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(1, 1, -1)
    flat = x.flatten(1)
    x_min, x_max = flat.min(dim=1).values[:, None, None], flat.max(dim=1).values[:, None, None]
    low = torch.minimum(a * x_min, a * x_max) + b  # (B, A, Bg)
    high = torch.maximum(a * x_min, a * x_max) + b
    return (low >= 0) & (high <= 1)


def brightness_logp_change_db(
    model: BaseEnergy,
    x: torch.Tensor,
    offsets: Sequence[float],
    *,
    contrast: float = 1.0,
    reference_offset: float = 0.0,
    **kwargs,
) -> torch.Tensor:
    """``log p(a x + b) - log p(a x + b0)`` in dB/dim per image and offset b, at fixed contrast a.

    No clipping: an (image, b) pair whose pixels would leave [0, 1] is masked (NaN) rather than
    distorted by clipping. With ``a = 1`` this is the plain shift ``x + b``, which leaves [0, 1]
    for images that already span it (e.g. Fashion-MNIST); with ``a < 1`` and
    ``0 <= b <= 1 - a`` every pair stays in range, the paper's grid ``a + b <= 1`` (Fig. 4, where
    log p barely moves with b).

    Args:
        model: a normalised energy model.
        x: images (B, C, H, W) in [0, 1].
        offsets: brightness offsets b (O,).
        contrast: a.
        reference_offset: b0 (the reference pair is not masked).
        **kwargs: passed to ``affine_logp_db`` (batch_size, device, progress).

    Returns:
        (B, O) float64, NaN where masked.
    """
    x = check_images(model, x)
    b = torch.as_tensor([reference_offset, *offsets], dtype=x.dtype)
    logp = affine_logp_db(model, x, [contrast], b, **kwargs)[:, 0, :]  # (B, 1 + O)
    change = logp[:, 1:] - logp[:, :1]  # (B, O)
    offsets_64 = b[1:].double()
    low = contrast * x.flatten(1).amin(dim=1).double()[:, None] + offsets_64  # (B, O)
    high = contrast * x.flatten(1).amax(dim=1).double()[:, None] + offsets_64
    return change.masked_fill((low < 0) | (high > 1), float("nan"))


def contrast_logp_db(
    model: BaseEnergy, x: torch.Tensor, contrasts: Sequence[float], **kwargs
) -> torch.Tensor:
    """log p in dB/dim of ``a (x - m) + m`` (contrast a about each image's own mean m).

    For a in [0, 1] the images stay in [0, 1]. The paper finds log p falls as the dynamic range
    grows (Fig. 4), so it should rise as a decreases.

    Args:
        model: a normalised energy model.
        x: images (B, C, H, W) in [0, 1].
        contrasts: values of a (A,).
        **kwargs: passed to ``affine_logp_db`` (batch_size, device); called once per image.

    Returns:
        (B, A) float64.
    """
    x = check_images(model, x)
    mean = x.flatten(1).mean(dim=1)  # (B,)
    centered = x - mean.view(-1, *([1] * (x.ndim - 1)))
    rows = [
        affine_logp_db(model, centered[i : i + 1], contrasts, [mean[i].item()], **kwargs)[0, :, 0]
        for i in range(x.shape[0])
    ]
    return torch.stack(rows) if rows else torch.empty(0, len(contrasts), dtype=torch.float64)
