"""log p along straight lines between images (Fig. 12)."""

import torch

from dsm_core import units
from dsm_core.analysis import interpolation_logp_db

from .closed_forms import exact_energy_nats


def test_path_and_chord_on_the_oracle(gaussian_oracle, oracle_images):
    x0, x1 = oracle_images[:3], oracle_images[3:]
    result = interpolation_logp_db(gaussian_oracle, x0, x1, 5)
    alphas = torch.linspace(0, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(result.alphas, alphas)
    assert result.path_logp_db.shape == result.chord_logp_db.shape == (3, 5)
    for j, alpha in enumerate(alphas.tolist()):
        y = (1 - alpha) * x0 + alpha * x1
        expected = units.energy_nats_to_logp_db(exact_energy_nats(gaussian_oracle, y, 0.0), 16)
        torch.testing.assert_close(result.path_logp_db[:, j], expected, rtol=0, atol=1e-9)
    # the chord weights (1 - alpha) on x0: both curves meet at both ends
    torch.testing.assert_close(result.chord_logp_db[:, 0], result.path_logp_db[:, 0])
    torch.testing.assert_close(result.chord_logp_db[:, -1], result.path_logp_db[:, -1])
    lp0, lp1 = result.path_logp_db[:, 0], result.path_logp_db[:, -1]
    torch.testing.assert_close(result.chord_logp_db[:, 1], 0.75 * lp0 + 0.25 * lp1)
    # a Gaussian log density is concave: the path lies above the chord
    assert torch.all(result.excess_db[:, 1:-1] > 0)


def test_unet_shapes(tiny_model, tiny_images):
    calls = []
    result = interpolation_logp_db(
        tiny_model,
        tiny_images[:2],
        tiny_images[2:4],
        [0.0, 0.5, 1.0],
        progress=lambda *c: calls.append(c),
    )
    assert result.path_logp_db.shape == (2, 3)
    assert calls == [(1, 3), (2, 3), (3, 3)]
