"""Gradient ascent and descent on log p (Fig. 13)."""

import math

import pytest
import torch

from dsm_core import units
from dsm_core.analysis import ascend_logp, default_step_size, iter_logp_ascent, max_curvature


def test_ascent_converges_to_the_mode_and_raises_logp_monotonically(gaussian_oracle, oracle_images):
    start = oracle_images.clamp(0, 1)
    # stable and monotone for step < min eigenvalue (0.05): 1/L-smooth projected ascent
    result = ascend_logp(gaussian_oracle, start, num_steps=1500, step_size=0.02)
    curve = result.logp_db_curve  # (1501, 6)
    assert curve.shape == (1501, 6)
    assert torch.all(curve[1:] >= curve[:-1] - 1e-12)
    mean = gaussian_oracle.mean.expand_as(start)
    assert torch.all((mean >= 0) & (mean <= 1))  # so the box-constrained mode is the mean
    start_dist = (start - mean).flatten(1).norm(dim=1)
    end_dist = (result.best_image - mean).flatten(1).norm(dim=1)
    assert torch.all(end_dist < 0.01 * start_dist)
    assert torch.all(result.best_step == 1500)
    mode_logp = units.energy_nats_to_logp_db(gaussian_oracle.energy(mean[:1], 0.0), 16)
    torch.testing.assert_close(result.best_logp_db, mode_logp.expand(6).double(), atol=1e-4, rtol=0)


def test_descent_lowers_logp_and_stays_in_the_box(gaussian_oracle, oracle_images):
    start = oracle_images.clamp(0, 1)
    result = ascend_logp(gaussian_oracle, start, num_steps=200, step_size=0.02, direction="descent")
    curve = result.logp_db_curve
    assert torch.all(curve[1:] <= curve[:-1] + 1e-12)
    assert torch.all(curve[-1] < curve[0] - 1.0)
    assert torch.all(result.best_logp_db == curve.min(dim=0).values)
    assert result.best_image.min() >= 0 and result.best_image.max() <= 1


def test_step_follows_the_gradient_in_the_chosen_unit(gaussian_oracle, oracle_images):
    x = oracle_images.clamp(0.1, 0.9)
    d = gaussian_oracle.d
    assert default_step_size(gaussian_oracle) == pytest.approx(1e-2 / d)
    grad_y = gaussian_oracle.grad_y(x, 0.0)
    steps = list(iter_logp_ascent(gaussian_oracle, x, num_steps=1, clip=False))
    assert [s.step for s in steps] == [0, 1]
    torch.testing.assert_close(steps[1].image, x - 1e-2 / d * grad_y)
    db = list(
        iter_logp_ascent(gaussian_oracle, x, num_steps=1, step_size=0.5, unit="db", clip=False)
    )
    torch.testing.assert_close(db[1].image, x - 0.5 * 10 / (d * math.log(10)) * grad_y)


def test_unet_batched_equals_unbatched_and_generator_can_stop(tiny_model, tiny_images):
    kwargs = dict(num_steps=3, step_size=1e-3)
    whole = ascend_logp(tiny_model, tiny_images, batch_size=8, **kwargs)
    pieces = ascend_logp(tiny_model, tiny_images, batch_size=3, device="cpu", **kwargs)
    assert whole.best_image.shape == tiny_images.shape
    assert whole.logp_db_curve.shape == (4, 8)
    torch.testing.assert_close(whole.best_image, pieces.best_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(whole.logp_db_curve, pieces.logp_db_curve, rtol=0, atol=1e-5)
    assert whole.best_image.min() >= 0 and whole.best_image.max() <= 1
    gen = iter_logp_ascent(tiny_model, tiny_images[:1], num_steps=1000)
    first = next(gen)
    gen.close()
    assert first.step == 0 and first.logp_db.shape == (1,)


def test_max_curvature_is_the_gaussian_hessians_largest_eigenvalue(gaussian_oracle, oracle_images):
    # grad_y^2 U = V diag(1 / (lam_i + t)) V^T at every y: the largest is 1 / (lam_min + t)
    lam_min = gaussian_oracle.eigenvalues.min().item()
    for t in (0.0, 0.1):
        curvature = max_curvature(
            gaussian_oracle, oracle_images, t=t, num_iters=300, generator=torch.Generator()
        )
        assert curvature.shape == (6,) and curvature.dtype == torch.float64
        torch.testing.assert_close(
            curvature, torch.full((6,), 1 / (lam_min + t), dtype=torch.float64), rtol=1e-4, atol=0
        )


def test_ascent_steps_are_stable_below_two_over_the_curvature(gaussian_oracle, oracle_images):
    # the stability rule in max_curvature's docstring, on the exact Gaussian energy (no clip)
    curvature = max_curvature(gaussian_oracle, oracle_images[:1], num_iters=300).item()
    mean = gaussian_oracle.mean.expand_as(oracle_images)
    distance = {}
    for factor in (1.9, 2.1):
        *_, last = iter_logp_ascent(
            gaussian_oracle, oracle_images, num_steps=300, step_size=factor / curvature, clip=False
        )
        distance[factor] = (last.image - mean).flatten(1).norm(dim=1)  # (6,)
    start = (oracle_images - mean).flatten(1).norm(dim=1)
    assert torch.all(distance[1.9] < 0.1 * start)  # converges to the mode
    assert torch.all(distance[2.1] > 10 * start)  # oscillates with growing amplitude


def test_max_curvature_matches_the_dense_hessian_of_a_unet(tiny_model, tiny_images):
    model = tiny_model.double()
    x = tiny_images[:1].double()
    curvature = max_curvature(model, x, num_iters=500, generator=torch.Generator().manual_seed(1))
    y = x.clone().requires_grad_(True)
    _, grad_y, _ = model.energy_and_scores(y, 0.0, create_graph=True)
    flat = grad_y.flatten()  # (256,)
    rows = [torch.autograd.grad(flat[i], y, retain_graph=True)[0].flatten() for i in range(256)]
    hessian = torch.stack(rows)  # (256, 256), built one row at a time
    torch.testing.assert_close(hessian, hessian.T, rtol=0, atol=1e-8 * hessian.abs().max().item())
    eigenvalues = torch.linalg.eigvalsh(hessian)
    dominant = eigenvalues[eigenvalues.abs().argmax()]
    torch.testing.assert_close(curvature[0], dominant, rtol=1e-3, atol=0)


def test_max_curvature_refuses_bad_arguments(gaussian_oracle, oracle_images):
    with pytest.raises(ValueError, match="num_iters"):
        max_curvature(gaussian_oracle, oracle_images, num_iters=0)
    with pytest.raises(ValueError):
        max_curvature(gaussian_oracle, oracle_images[:, :, :2])
