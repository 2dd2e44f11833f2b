"""The UNet energy: release parameter counts, exact scores, homogeneity, heads, losses."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import EnergyModel, GaussianTimeTerm, model_from_config
from dsm_core.layers import GainControlNorm
from dsm_core.losses import score_matching_terms
from dsm_core.noise import add_noise, sample_t
from dsm_core.train_config import resolve_config


def test_release_parameter_counts():
    assert sum(p.numel() for p in dc.build_energy_model("imagenet64").parameters()) == 8_647_552
    color = dc.build_energy_model("imagenet64", channels=3)
    assert sum(p.numel() for p in color.parameters()) == 8_649_856
    assert color.image_shape == (3, 64, 64)


def test_release_layout():
    unet = dc.build_energy_model("imagenet64").unet
    convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    norms = [m for m in unet.modules() if isinstance(m, GainControlNorm)]
    assert len(convs) == 21 and len(norms) == 20
    assert all(m.bias is None for m in convs)
    assert unet.middle[-1].conv.weight.shape == (512, 256, 2, 2)  # transposed 2x2 up-sampling
    assert unet.decoder[0][-1].norm is None  # bare final conv
    assert torch.allclose(unet.embedding.frequencies[[0, -1]], torch.tensor([1.0, 0.01]))


def test_energy_and_scores_shapes_and_denoiser(tiny_model, tiny_images):
    t = torch.full((8,), 0.01)
    energy, grad_y, grad_t = tiny_model.energy_and_scores(tiny_images, t)
    assert energy.shape == (8,) and grad_y.shape == tiny_images.shape and grad_t.shape == (8,)
    assert not energy.requires_grad and not grad_y.requires_grad
    denoised = tiny_model.denoise(tiny_images, t)
    assert torch.allclose(denoised, tiny_images - 0.01 * grad_y, atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(tiny_model.energy(tiny_images, t), energy)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        tiny_model.energy_and_scores(tiny_images, t)
    with pytest.raises(ValueError, match="shape"):
        tiny_model.energy(torch.rand(2, 3, 16, 16), 0.1)


def test_log_norm_is_additive(tiny_model, tiny_images):
    before = tiny_model.energy(tiny_images, 0.0)
    tiny_model.log_norm_nats = 123.25
    assert torch.allclose(tiny_model.energy(tiny_images, 0.0) - before, torch.full((8,), 123.25))


@pytest.mark.parametrize("head", ["inner_product", "squared_norm"])
@pytest.mark.parametrize("time_term", ["none", "gaussian", "gaussian_log_t"])
@pytest.mark.parametrize("mean_term", ["none", "gaussian"])
def test_scores_equal_finite_differences(head, time_term, mean_term, generator):
    torch.manual_seed(1)
    model = dc.build_energy_model(
        "tiny", head=head, time_term=time_term, mean_term=mean_term
    ).double()
    if time_term != "none":  # make the zero-initialised corrections g (and h) non-trivial
        torch.nn.init.normal_(model.time_term.correction[2].weight, std=0.3)
    if time_term == "gaussian_log_t":
        torch.nn.init.normal_(model.time_term.log_t_correction[2].weight, std=0.3)
    y = torch.rand(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.03, 0.7], dtype=torch.float64, requires_grad=True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y, t: model.energy(y, t), (y, t), eps=1e-6, atol=1e-5)
    _, grad_y, grad_t = model.energy_and_scores(y.detach(), t.detach())
    ref_y, ref_t = torch.autograd.grad(model.energy(y, t).sum(), (y, t))
    assert torch.allclose(grad_y, ref_y) and torch.allclose(grad_t, ref_t)


def test_unet_with_relu_is_homogeneous(generator):
    # Bias-free convs and the gain-controlled norm are 1-homogeneous; GELU is not (it is only
    # asymptotically), so exact homogeneity s(ly) = l s(y) holds with ReLU and eps -> 0.
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny", nonlinearity="relu", norm_eps=0.0).double()
    y = torch.rand(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.1, 0.1], dtype=torch.float64)
    f, f_scaled = model.unet(y, t), model.unet(3.7 * y, t)
    assert torch.allclose(f_scaled, 3.7 * f, rtol=1e-9, atol=1e-12)
    gelu = dc.build_energy_model("tiny").double()
    rel = (gelu.unet(3.7 * y, t) - 3.7 * gelu.unet(y, t)).norm() / (3.7 * gelu.unet(y, t)).norm()
    assert rel > 1e-3  # the release's GELU network is only approximately homogeneous


def test_norm_layer_is_homogeneous_and_equalises_channels(generator):
    norm = GainControlNorm(4, 8, eps=0.0).double()
    h = torch.randn(3, 4, 5, 5, generator=generator, dtype=torch.float64)
    h = h * torch.tensor([0.1, 1.0, 3.0, 10.0], dtype=torch.float64)[None, :, None, None]
    e = torch.zeros(3, 8, dtype=torch.float64)
    torch.nn.init.zeros_(norm.conditioning.weight)
    torch.nn.init.zeros_(norm.conditioning.bias)
    out = norm(h, e)
    assert torch.allclose(norm(2.5 * h, e), 2.5 * out)
    var = out.var(dim=(2, 3), unbiased=False)  # (B, C): equal across channels
    assert torch.allclose(var, var.mean(dim=1, keepdim=True).expand_as(var))
    centered = h - h.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out.square().sum(dim=(1, 2, 3)), centered.square().sum(dim=(1, 2, 3)))


def test_score_model_baseline(generator):
    model = dc.build_energy_model("tiny", head="score")
    assert isinstance(model, dc.ScoreModel)
    y = torch.rand(2, 1, 16, 16, generator=generator)
    assert torch.allclose(model.denoise(y, 0.5), y - 0.5 * model.unet(y, torch.full((2,), 0.5)))


@pytest.mark.parametrize("mean_term", ["none", "gaussian"])
def test_every_parameter_gets_a_gradient(tiny_images, generator, mean_term):
    model = dc.build_energy_model("tiny", time_term="gaussian", mean_term=mean_term)
    t = sample_t(8, NoiseConfig(t_min=1e-4, t_max=10.0), generator=generator)
    y = add_noise(tiny_images, t, torch.randn(tiny_images.shape, generator=generator))
    loss = score_matching_terms(model, tiny_images, y, t, LossConfig()).total(LossConfig()).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_image_size_must_fit_scales():
    with pytest.raises(ValueError, match="multiple of"):
        dc.build_energy_model("tiny", image_size=18)
    with pytest.raises(ValueError, match="unknown preset"):
        dc.build_energy_model("nope")


def test_sample_t_is_log_uniform(generator):
    t = sample_t(200_000, NoiseConfig(t_min=1e-9, t_max=1e3), generator=generator)
    log10_t = t.double().log10()
    assert log10_t.min() >= -9 - 1e-4 and log10_t.max() <= 3 + 1e-4
    assert log10_t.mean().item() == pytest.approx(-3.0, abs=0.03)  # U(-9, 3)
    assert log10_t.var().item() == pytest.approx(144 / 12, rel=0.02)


def test_energy_model_rejects_score_head():
    cfg = dc.build_energy_model("tiny", head="score").config
    with pytest.raises(ValueError):
        EnergyModel(cfg)
    assert math.isclose(dc.build_energy_model("tiny").log_norm_nats, 0.0)


def test_energy_is_flat_and_continuous_below_the_trained_floor(generator):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny", t_min=1e-4, time_term="gaussian")
    y = torch.rand(4, 1, 16, 16, generator=generator)
    with torch.no_grad():
        below = torch.stack([model.energy(y, t) for t in (0.0, 1e-8, 1e-5, 1e-4)])  # (4, 4)
        just_above = model.energy(y, 1e-4 * (1 + 1e-5))
    assert torch.equal(below, below[:1].expand_as(below))
    assert torch.allclose(just_above, below[-1], rtol=1e-5, atol=1e-3)
    energy, grad_y, grad_t = model.energy_and_scores(y, torch.tensor([0.0, 1e-6, 1e-4, 1e-3]))
    assert grad_t[:2].abs().max() == 0 and grad_t[3] != 0
    assert torch.allclose(model.grad_y(y, 0.0), model.grad_y(y, 1e-4))
    # without a floor, t = 0 is an evaluation below the range: the network there differs
    unfloored = dc.build_energy_model("tiny", t_min=0.0, time_term="gaussian")
    unfloored.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(unfloored.energy(y, 0.0), below[0])
        assert torch.allclose(unfloored.energy(y, 1e-3), model.energy(y, 1e-3))


def test_log_t_time_term_follows_the_gaussian_mode_height_at_small_t():
    """For N(0, diag lambda) the exact y-independent part of U(y, t) is (1/2) sum_i ln(2 pi
    (lambda_i + t)); with lambda_i down to 1e-5 it keeps changing far below data_var. Fitted the
    same way (up to a constant, K's job), h(ln t) follows it; g(ln(data_var + t)) alone cannot,
    its input being flat for t << data_var (issue 12)."""
    torch.manual_seed(0)
    lam = torch.logspace(-5, -1, 64, dtype=torch.float64)  # (64,) covariance eigenvalues
    t = torch.logspace(-6, 3, 200, dtype=torch.float64)  # (200,) the trained range
    exact = 0.5 * torch.log(2 * math.pi * (lam + t[:, None])).mean(dim=1)  # (200,) nats/dim
    small = t <= 1e-4
    errors = {}
    for name, log_t_range in (("g", None), ("g+h", (1e-6, 1e3))):
        term = GaussianTimeTerm(1, 0.05, log_t_range=log_t_range).double()
        optimizer = torch.optim.Adam(term.parameters(), lr=1e-2)
        for _ in range(1500):
            optimizer.zero_grad()
            err = term(t) - exact
            (err - err.mean()).square().mean().backward()
            optimizer.step()
        with torch.no_grad():
            err = term(t) - exact
        errors[name] = (err - err.mean()).abs().max().item(), err[small].max() - err[small].min()
    change = exact[small].max() - exact[small].min()  # 0.225 nats/dim from t = 1e-6 to 1e-4
    assert errors["g+h"][0] < 0.02 and errors["g+h"][1] < 0.02 * change
    assert errors["g"][0] > 0.2 and errors["g"][1] > 0.8 * change


def test_training_sets_the_floor_to_the_noise_range():
    cfg = resolve_config({"model": {"preset": "tiny"}, "noise": {"t_min": 1e-5}})
    assert cfg.model.t_min == 1e-5 and model_from_config(cfg.model).t_min == 1e-5
    with pytest.raises(ValueError, match="model.t_min"):
        resolve_config({"model": {"preset": "tiny", "t_min": 1e-3}, "noise": {"t_min": 1e-5}})


def test_input_offset_moves_the_centre_of_the_energy(generator):
    """U_c(y) = U_0(y - c) with the same weights; with a homogeneous (ReLU, eps = 0) network the
    raw energy scales as a^2 along the contrast axis c + a (y - c) (paper §2.3, eq. 10)."""
    torch.manual_seed(0)
    relu = {"nonlinearity": "relu", "norm_eps": 0.0}
    centred = dc.build_energy_model("tiny", input_offset=0.5, **relu).double()
    plain = dc.build_energy_model("tiny", **relu).double()
    plain.load_state_dict(centred.state_dict())
    y = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.full((3,), 0.01, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(centred.raw_energy(y, t), plain.raw_energy(y - 0.5, t))
        for a in (0.25, 2.0):
            scaled = centred.raw_energy(0.5 + a * (y - 0.5), t)
            assert torch.allclose(scaled, a**2 * centred.raw_energy(y, t), rtol=1e-9)
        # the release's form (offset 0) is centred on black instead
        assert torch.allclose(plain.raw_energy(0.25 * y, t), 0.0625 * plain.raw_energy(y, t))
        gelu = dc.build_energy_model("tiny", input_offset=0.5)
        flat = gelu.raw_energy(torch.full((1, 1, 16, 16), 0.5), t[:1].float())
    assert flat.item() == 0  # the centre: zero network energy, the top of every contrast axis


def test_mean_term_scores_the_image_mean_as_an_exact_noisy_gaussian(generator):
    """With mean_term="gaussian" the network never sees a channel's mean: U(y + c) - U(y) is the
    closed-form Gaussian energy difference of the mean coordinate, and the denoiser shrinks the
    image mean towards mu as the posterior mean of a Gaussian does,
    mean(D(y)) = mu + H W v / (H W v + t) (mean(y) - mu), at every t."""
    torch.manual_seed(2)
    model = dc.build_energy_model("tiny", mean_term="gaussian", data_var=0.04).double()
    with torch.no_grad():
        model.mean_term.mean.fill_(0.3)
    y = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-3, 1.0, 1e3], dtype=torch.float64)
    hw_var = 256 * 0.04 + t  # (3,) variance of the mean coordinate u = 16 mean(y)

    def gaussian(mean):  # (3,) energy of the mean coordinate
        return 0.5 * 256 * (mean - 0.3) ** 2 / hw_var + 0.5 * torch.log(2 * math.pi * hw_var)

    with torch.no_grad():
        shift = model.energy(y + 0.7, t) - model.energy(y, t)
    mean = y.mean(dim=(1, 2, 3))
    assert torch.allclose(shift, gaussian(mean + 0.7) - gaussian(mean), rtol=1e-6)
    denoised_mean = model.denoise(y, t).mean(dim=(1, 2, 3))
    assert torch.allclose(denoised_mean, 0.3 + (256 * 0.04 / hw_var) * (mean - 0.3), atol=1e-10)
    # the release's network alone passes the mean through (its layers remove each channel's mean)
    plain = dc.build_energy_model("tiny").double()
    plain_mean = plain.denoise(y - 2.0, t).mean(dim=(1, 2, 3))
    assert torch.allclose(plain_mean, mean - 2.0, atol=0.02 * 2.0)


def test_mean_term_needs_an_energy_and_no_offset():
    with pytest.raises(ValueError, match="input_offset must be 0"):
        dc.build_energy_model("tiny", mean_term="gaussian", input_offset=0.5)
    with pytest.raises(ValueError, match="score model"):
        dc.build_energy_model("tiny", head="score", mean_term="gaussian")


def test_squared_norm_with_the_mean_term_is_bounded_by_the_flat_image(generator):
    """With head="squared_norm" and mean_term="gaussian" the network part |f(y - mean)|^2/2 is
    >= 0 and 0 at a flat image (a bias-free network maps 0 to 0), so for any weights no image is
    more probable than the flat image of its channel means: the energy is bounded below off the
    data and gradient ascent cannot climb past the best constant. With a homogeneous (ReLU,
    eps = 0) network the network part scales as a^2 along every contrast axis mean + a (y - mean)
    (paper App. B.2), so log p falls monotonically with contrast. The release's inner product
    has no such bound: its network part takes both signs."""
    torch.manual_seed(3)
    model = dc.build_energy_model("tiny", head="squared_norm", mean_term="gaussian").double()
    inner = dc.build_energy_model("tiny", mean_term="gaussian").double()
    for net in (model, inner):  # weights far from their initial scale
        for p in net.unet.parameters():
            torch.nn.init.normal_(p, std=0.5)
    noise = torch.rand(16, 1, 16, 16, generator=generator, dtype=torch.float64)
    stripes = torch.arange(16, dtype=torch.float64).remainder(2).expand(16, 16)  # saturated
    images = torch.cat([noise, 40.0 * (noise - 0.5) + 0.5, stripes.expand(1, 1, 16, 16)])
    t = torch.tensor([1e-6, 1e-2, 1.0], dtype=torch.float64)
    flat = images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()
    with torch.no_grad():
        for level in t:
            above_flat = model.energy(images, level) - model.energy(flat, level)
            assert (above_flat >= 0).all() and (above_flat[:16] > 0).all()
            inner_above_flat = inner.energy(images, level) - inner.energy(flat, level)
            assert (inner_above_flat < 0).any()
    relu = dc.build_energy_model(
        "tiny", head="squared_norm", mean_term="gaussian", nonlinearity="relu", norm_eps=0.0
    ).double()
    level = torch.full((16,), 1e-3, dtype=torch.float64)
    mean = noise.mean(dim=(2, 3), keepdim=True)  # (16, 1, 1, 1); eps = 0 is 0/0 at a flat image
    with torch.no_grad():
        net_part = [
            relu.raw_energy(mean + a * (noise - mean), level)
            - relu.mean_term(mean[:, :, 0, 0], level)
            for a in (0.5, 1.0, 2.0)
        ]
    assert torch.allclose(net_part[0], 0.25 * net_part[1], rtol=1e-9)
    assert torch.allclose(net_part[2], 4.0 * net_part[1], rtol=1e-9)
    assert (net_part[1] > 0).all()


def test_mean_embedding_lets_the_network_see_brightness_and_keeps_the_bound(tiny_images, generator):
    """mean_embedding=True: zero weights give exactly the model without it; with weights, the
    energy's scores equal finite differences, the network part changes with brightness (without
    it, it is invariant: p factorises into p(mean) p(x - mean)), every parameter trains, and no
    image is more probable than the flat image of its mean."""
    torch.manual_seed(4)
    kinds = dict(head="squared_norm", time_term="gaussian_log_t", mean_term="gaussian")
    blind = dc.build_energy_model("tiny", **kinds).double()
    seeing = dc.build_energy_model("tiny", mean_embedding=True, **kinds).double()
    missing, unexpected = seeing.load_state_dict(blind.state_dict(), strict=False)
    assert missing == ["mean_embedding.weight"] and not unexpected
    y = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-5, 1e-2, 10.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(seeing.energy(y, t), blind.energy(y, t), rtol=0, atol=0)
    torch.nn.init.normal_(seeing.mean_embedding.weight, std=1.0)

    def network_part(model, images):
        means = images.mean(dim=(2, 3))
        return model.raw_energy(images, t) - model.mean_term(means, t) - model.time_term(t)

    with torch.no_grad():
        brighter = y + 0.2
        blind_change = network_part(blind, brighter) - network_part(blind, y)
        seeing_change = network_part(seeing, brighter) - network_part(seeing, y)
    assert blind_change.abs().max() < 1e-9 * network_part(blind, y).abs().max()
    # at initialisation the norms' conditioning is weak: a relative change of 4e-4 ... 2e-2 here
    assert (seeing_change.abs() > 1e-5 * network_part(seeing, y).abs()).all()

    y_grad = y[:2].clone().requires_grad_(True)
    t_grad = torch.tensor([0.03, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda y, t: seeing.energy(y, t), (y_grad, t_grad), eps=1e-6, atol=1e-5
    )

    flat = y.mean(dim=(2, 3), keepdim=True).expand_as(y).contiguous()
    with torch.no_grad():
        assert (seeing.energy(y, t) > seeing.energy(flat, t)).all()

    model = dc.build_energy_model("tiny", mean_embedding=True, **kinds)
    levels = sample_t(8, NoiseConfig(t_min=1e-4, t_max=10.0), generator=generator)
    noisy = add_noise(tiny_images, levels, torch.randn(tiny_images.shape, generator=generator))
    cfg = LossConfig()
    score_matching_terms(model, tiny_images, noisy, levels, cfg).total(cfg).mean().backward()
    assert model.mean_embedding.weight.grad.abs().sum() > 0
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    with pytest.raises(ValueError, match="mean_embedding=True needs mean_term='gaussian'"):
        dc.build_energy_model("tiny", mean_embedding=True)


def test_box_term_is_a_lower_bound_on_leaving_the_box(generator):
    """The box term's claim, on data whose noisy density is exact: a few clean images in
    [0, 1]^d (clipped pixels included), p_t their Gaussian mixture. At every t, U_t(y) -
    U_t(clamp(y)) is at least sum_i dist(y_i, [0, 1])^2 / (2 t), and the term (any margin and
    fade) is below that; it is zero on the box and within the margin of it."""
    from dsm_core.energy import box_energy

    d = 16
    clean = torch.rand(5, d, generator=generator, dtype=torch.float64)
    clean[:, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)  # clipped pixels

    def exact_energy(y, t):  # -ln p_t(y) of the mixture, (B,)
        sq = (y[:, None, :] - clean[None]).square().sum(-1)  # (B, 5)
        log_p = torch.logsumexp(-sq / (2 * t), dim=1) - math.log(5)
        return -log_p + d / 2 * math.log(2 * math.pi * t)

    y = 0.5 + 0.8 * torch.randn(256, d, generator=generator, dtype=torch.float64)
    dist = (-y).clamp_min(0) + (y - 1).clamp_min(0)  # (256, d)
    assert (dist.sum(1) > 0).float().mean() > 0.9
    images = y.reshape(256, 1, 4, 4)
    for t in (1e-4, 1e-2, 1.0, 100.0):
        excess = exact_energy(y, t) - exact_energy(y.clamp(0, 1), t)
        assert (excess >= dist.square().sum(1) / (2 * t) - 1e-9 * excess.abs().max()).all()
        levels = torch.full((256,), t, dtype=torch.float64)
        for margin, box_var in ((0.0, 1e9), (3.0, 0.01)):
            box = box_energy(images, levels, margin, box_var)
            beyond = (dist - margin * math.sqrt(t)).clamp_min(0).square().sum(1)
            torch.testing.assert_close(box, beyond / (2 * t) * box_var / (box_var + t))
            assert (box <= excess + 1e-9).all()
    near = torch.rand(4, 1, 4, 4, generator=generator, dtype=torch.float64)
    near[:, 0, 0, 0], near[:, 0, 1, 1] = -0.002, 1.002  # inside the margin, outside the box
    levels = torch.full((4,), 1e-6, dtype=torch.float64)  # margin 3 sqrt(t) = 0.003
    assert (box_energy(near, levels, 3.0, 0.01) == 0).all()
    assert (box_energy(near, levels, 0.0, 0.01) > 0).all()


def test_box_term_adds_only_outside_the_box_and_keeps_exact_scores(generator):
    torch.manual_seed(5)
    kinds = dict(head="squared_norm", time_term="gaussian_log_t", mean_term="gaussian")
    plain = dc.build_energy_model("tiny", **kinds).double()
    boxed = dc.build_energy_model(
        "tiny", box_term="gaussian_tail", box_margin=1.0, box_var=0.02, **kinds
    ).double()
    boxed.load_state_dict(plain.state_dict())  # no weights of its own
    t = torch.tensor([1e-6, 1e-3, 1e-1, 10.0], dtype=torch.float64)
    inside = torch.rand(4, 1, 16, 16, generator=generator, dtype=torch.float64)
    outside = inside + 0.3 * torch.randn(inside.shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(boxed.energy(inside, t), plain.energy(inside, t), rtol=0, atol=0)
        dist = (-outside).clamp_min(0) + (outside - 1).clamp_min(0)
        beyond = (dist - t.sqrt()[:, None, None, None]).clamp_min(0)
        expected = beyond.square().flatten(1).sum(1) / (2 * t) * 0.02 / (0.02 + t)
        torch.testing.assert_close(boxed.energy(outside, t) - plain.energy(outside, t), expected)
    y_grad = outside[:2].clone().requires_grad_(True)
    t_grad = torch.tensor([0.003, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda y, t: boxed.energy(y, t), (y_grad, t_grad), eps=1e-7, atol=1e-5
    )
    with pytest.raises(ValueError, match="needs box_margin >= 0 and box_var > 0"):
        dc.build_energy_model("tiny", box_term="gaussian_tail", box_var=0.0)
