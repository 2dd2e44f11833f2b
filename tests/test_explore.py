"""dsm_core.explore: one-image probes agree with the analyses and with closed forms."""

import math

import numpy as np
import torch

import dsm_core as dc
from dsm_core import units
from dsm_core.explore import denoising_example, logp_gradient, logp_report


def test_logp_report_units_agree(tiny_model: dc.EnergyModel, tiny_images: torch.Tensor) -> None:
    reference = np.linspace(-5.0, 5.0, 11)
    report = logp_report(tiny_model, tiny_images, reference)
    expected_db = dc.logp_db(tiny_model, tiny_images).double().numpy()
    np.testing.assert_allclose(report.logp_db, expected_db, rtol=1e-6, atol=1e-9)
    energy = dc.energy_nats(tiny_model, tiny_images).double().numpy()
    np.testing.assert_allclose(report.logp_nats, -energy, rtol=1e-9)
    np.testing.assert_allclose(report.nll_bits_per_dim, energy / (tiny_model.d * math.log(2)))
    np.testing.assert_allclose(report.nll_bits_per_dim_discrete, report.nll_bits_per_dim + 8)
    # logp_db is rounded in the model's dtype (float32, as logp_db() stores it), the bits in float64
    float32_eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(
        report.logp_db, -units.DB_PER_BIT * report.nll_bits_per_dim, rtol=2 * float32_eps
    )
    np.testing.assert_allclose(report.percentile, dc.percentile_of(expected_db, reference).numpy())
    assert logp_report(tiny_model, tiny_images).percentile is None


def test_logp_gradient_is_the_exact_gaussian_score(gaussian_oracle: dc.GaussianEnergy) -> None:
    x = gaussian_oracle.mean[None].double() + 0.1
    for t in (0.0, 0.5):
        score = logp_gradient(gaussian_oracle, x, t)
        eps = 1e-6
        numeric = torch.empty_like(x)
        for i in range(x.numel()):
            step = torch.zeros(x.numel(), dtype=x.dtype)
            step[i] = eps
            step = step.view_as(x)
            plus = -gaussian_oracle.energy(x + step, t)
            minus = -gaussian_oracle.energy(x - step, t)
            numeric.view(-1)[i] = (plus - minus).item() / (2 * eps)
        torch.testing.assert_close(score, numeric, rtol=1e-5, atol=1e-6)


def test_denoising_example_gains_on_the_oracle(gaussian_oracle: dc.GaussianEnergy) -> None:
    x = gaussian_oracle.sample(4, generator=torch.Generator().manual_seed(1))
    example = denoising_example(gaussian_oracle, x, 0.0, generator=torch.Generator().manual_seed(2))
    assert example.t == 1.0 and example.noisy.shape == x.shape
    assert (example.psnr_out_db > example.psnr_in_db).all()
    again = denoising_example(gaussian_oracle, x, 0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(example.denoised, again.denoised)
    nominal = denoising_example(
        gaussian_oracle, x.repeat(64, 1, 1, 1), 20.0, generator=torch.Generator().manual_seed(3)
    )
    assert abs(float(np.mean(nominal.psnr_in_db)) - 20.0) < 0.5
