import math

import pytest
import torch

from dsm_core import units


def test_known_factors():
    # 1 bit = 10 log10(2) dB = 3.0103 dB; log p in dB/dim = -3.0103 x energy bits/dim
    assert units.bits_to_db(1.0) == pytest.approx(3.0103, abs=1e-4)
    assert units.db_to_bits(1.0) == pytest.approx(0.33219, abs=1e-5)
    d = 4096
    energy = 1234.5
    logp_db = units.energy_nats_to_logp_db(energy, d)
    bits = units.nats_to_bits_per_dim(energy, d)
    assert logp_db == pytest.approx(-3.0103 * bits, rel=1e-4)
    # 10 dB/dim is a factor 10^d in density: d * ln 10 nats
    assert units.db_per_dim_to_nats(10.0, d) == pytest.approx(d * math.log(10.0))


def test_release_numbers():
    # reference-spec §5.2: mean log p 11.425 dB/dim -> discrete NLL 4.2047 bits/dim
    d = 4096
    energy = units.logp_db_to_energy_nats(11.425, d)
    assert units.discrete_nll_bits_per_dim(energy, d) == pytest.approx(4.2047, abs=1e-3)
    # K = 5845.43 nats is 6.198 dB/dim; the Gaussian entropy at t_max=1e3 is 21.16 dB/dim
    assert units.nats_to_db_per_dim(5845.43, d) == pytest.approx(6.198, abs=1e-3)
    entropy = units.gaussian_entropy_nats(d, 1e3)
    assert entropy == pytest.approx(19959.1, abs=0.1)
    assert units.nats_to_db_per_dim(entropy, d) == pytest.approx(21.16, abs=0.01)


def test_round_trips():
    psnr = torch.linspace(-30, 90, 17, dtype=torch.float64)
    assert torch.allclose(units.t_to_psnr_db(units.psnr_db_to_t(psnr)), psnr)
    assert units.psnr_db_to_t(90.0) == pytest.approx(1e-9)
    assert units.psnr_db_to_t(-30.0) == pytest.approx(1e3)
    assert units.sigma_to_t(units.t_to_sigma(0.25)) == pytest.approx(0.25)
    x = torch.tensor([-3.0, 0.5, 17.0], dtype=torch.float64)
    d = 12288
    assert torch.allclose(units.nats_to_db_per_dim(units.db_per_dim_to_nats(x, d), d), x)
    assert torch.allclose(units.bits_per_dim_to_nats(units.nats_to_bits_per_dim(x, d), d), x)
    assert torch.allclose(units.logp_db_to_energy_nats(units.energy_nats_to_logp_db(x, d), d), x)
    assert torch.allclose(units.bits_to_db(units.db_to_bits(x)), x)


def test_discrete_nll_is_named_shift():
    assert units.discrete_nll_bits_per_dim(0.0, 10) == 8
    assert units.discrete_nll_bits_per_dim(0.0, 10, bits=5) == 5
