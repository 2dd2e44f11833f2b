"""The library's entry points take images and noise levels through one check: dtypes, numpy
arrays, lists and devices are cast or refused with a message; non-finite values are refused."""

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core import analysis

# Every public entry point that takes images, as f(model, x) -> tensor (energy and scores: the
# energy). ``analysis.denoise`` takes y, ``effective_dimensionality`` a grid of t.
ENTRY_POINTS = {
    "logp_db": lambda m, x: dc.logp_db(m, x),
    "nll_bits_per_dim": lambda m, x: dc.nll_bits_per_dim(m, x),
    "energy_and_scores": lambda m, x: m.energy_and_scores(x, 0.01)[0],
    "energy": lambda m, x: m.energy(x, 0.01),
    "denoise": lambda m, x: analysis.denoise(m, x, 0.01),
    "affine_logp_db": lambda m, x: analysis.affine_logp_db(m, x, [0.5], [0.1]),
    "ascend_logp": lambda m, x: analysis.ascend_logp(m, x, num_steps=1).best_logp_db,
    "effective_dimensionality": lambda m, x: analysis.effective_dimensionality(
        m, x, [0.01], num_noise=1, generator=torch.Generator().manual_seed(0)
    ),
    "interpolation_logp_db": lambda m, x: analysis.interpolation_logp_db(m, x, x, 2).path_logp_db,
}


@pytest.fixture
def pixels(generator: torch.Generator) -> torch.Tensor:
    """Two 16x16 gray images as uint8 levels, (2, 1, 16, 16)."""
    return torch.randint(0, 256, (2, 1, 16, 16), generator=generator, dtype=torch.uint8)


def _reference(tiny_model, name: str, x: torch.Tensor) -> torch.Tensor:
    return ENTRY_POINTS[name](tiny_model, x.float())


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_float_dtypes_are_cast_to_the_models(tiny_model, pixels, name, dtype):
    x = pixels.to(dtype) / 255  # the values the cast sees, rounded to ``dtype``
    expected = _reference(tiny_model, name, x)
    got = ENTRY_POINTS[name](tiny_model, x)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_uint8_numpy_and_lists_mean_the_same_images(tiny_model, pixels, name):
    x = pixels.float() / 255
    expected = _reference(tiny_model, name, x)
    for variant in (pixels, pixels.numpy(), x.numpy(), x.double().numpy(), x.tolist()):
        torch.testing.assert_close(ENTRY_POINTS[name](tiny_model, variant), expected)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda p: p.long(), "floating-point images in \\[0, 1\\] \\(or uint8 pixels\\), got "),
        (lambda p: p > 128, "got torch.bool"),
        (lambda p: p.numpy().astype(np.int32), "got torch.int32"),
        (lambda p: "images.png", "expected a float tensor \\(B, 1, 16, 16\\) in \\[0, 1\\]"),
        (lambda p: [[1.0, 2.0], [3.0]], "expected a float tensor"),
    ],
)
def test_ambiguous_types_are_refused_naming_the_expected_type(
    tiny_model, pixels, name, bad, message
):
    with pytest.raises(TypeError, match=message):
        ENTRY_POINTS[name](tiny_model, bad(pixels))


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_images_are_refused(tiny_model, pixels, name, value):
    x = pixels.float() / 255
    x[1, 0, 3, 5] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        ENTRY_POINTS[name](tiny_model, x)


@pytest.mark.parametrize("t", [-1e-3, float("nan"), float("inf"), [0.1, -0.1]])
@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, t: dc.logp_db(m, x, t),
        lambda m, x, t: m.energy_and_scores(x, t),
        lambda m, x, t: m.energy(x, t),
        lambda m, x, t: m.denoise(x, t),
        lambda m, x, t: analysis.denoise(m, x, t),
        lambda m, x, t: analysis.logp_db_curve(m, x, t),
        lambda m, x, t: analysis.effective_dimensionality(m, x, t, num_noise=1),
    ],
)
def test_negative_or_non_finite_noise_levels_are_refused(tiny_model, pixels, t, call):
    with pytest.raises(ValueError, match="finite and >= 0"):
        call(tiny_model, pixels.float() / 255, t)


def test_noise_levels_as_numpy_and_lists(tiny_model, pixels):
    x = pixels.float() / 255
    per_image = dc.logp_db(tiny_model, x, torch.tensor([0.01, 0.1]))
    for t in (np.array([0.01, 0.1]), [0.01, 0.1]):
        torch.testing.assert_close(dc.logp_db(tiny_model, x, t), per_image)
    torch.testing.assert_close(dc.logp_db(tiny_model, x, np.float64(0.01))[0], per_image[0])
    with pytest.raises(TypeError, match="t: expected a number"):
        dc.logp_db(tiny_model, x, "0.1")


def test_images_move_to_the_models_device_and_dtype(tiny_model, pixels):
    model = tiny_model.double()  # a float64 model: float32 and uint8 inputs become float64
    x = model.check_images(pixels)
    assert x.dtype == torch.float64 and x.device == next(model.parameters()).device
    torch.testing.assert_close(x, pixels.double() / 255)
    y = torch.rand(2, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    assert model.check_images(y) is y  # nothing to change: the same tensor, graph kept
    if torch.cuda.is_available():  # a CUDA input on a CPU model comes back to the CPU
        assert model.check_images(y.detach().cuda()).device.type == "cpu"
