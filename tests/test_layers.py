"""The UNet's layers with written-out double backwards (issue 16) against their plain forms:
the same values, gradients and second derivatives (float64 gradcheck and gradgradcheck)."""

import pytest
import torch
from torch import nn

import dsm_core as dc
from dsm_core.config import LossConfig
from dsm_core.layers import (
    Conv2d,
    ConvTranspose2d,
    Gelu,
    _GainNorm,
    concat_channels,
    plain_gain_norm,
    use_plain_layers,
)
from dsm_core.losses import score_matching_terms


def _second_order(fn, inputs: tuple[torch.Tensor, ...], generator: torch.Generator) -> list:
    """fn(*inputs), its vector-Jacobian product with a random cotangent (create_graph), and the
    gradient of a random linear function of that product w.r.t. the cotangent and inputs."""
    out = fn(*inputs)
    cotangent = torch.randn(out.shape, generator=generator, dtype=out.dtype).requires_grad_()
    grads = torch.autograd.grad(out, inputs, cotangent, create_graph=True)
    probes = [torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in grads]
    second = torch.autograd.grad(
        sum((g * p).sum() for g, p in zip(grads, probes, strict=True)),
        (cotangent, *inputs),
        materialize_grads=True,  # zeros where a gradient is linear in its input (concat)
    )
    return [out, *grads, *second]


def _assert_same(fn, plain, inputs: tuple[torch.Tensor, ...]) -> None:
    ours = _second_order(fn, inputs, torch.Generator().manual_seed(1))
    theirs = _second_order(plain, inputs, torch.Generator().manual_seed(1))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize(("eps", "size"), [(1e-5, (4, 5)), (0.3, (4, 5)), (1e-5, (1, 1))])
def test_gain_norm_matches_plain_form(generator, eps, size):
    """Incl. 1x1 maps (the release's coarsest scale at batch 1-2): zero variance everywhere."""
    scales = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)[None, :, None, None]
    h = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64) * scales
    h.requires_grad_()
    gain = torch.randn(2, 3, generator=generator, dtype=torch.float64).requires_grad_()
    _assert_same(
        lambda h, g: _GainNorm.apply(h, g, eps), lambda h, g: plain_gain_norm(h, g, eps), (h, gain)
    )


def test_gelu_matches_plain_form(generator):
    x = (3.0 * torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)).requires_grad_()
    _assert_same(Gelu(), nn.functional.gelu, (x,))


@pytest.mark.parametrize(
    ("ours", "plain", "kwargs"),
    [
        (Conv2d, nn.Conv2d, {"kernel_size": 3, "padding": 1}),
        (Conv2d, nn.Conv2d, {"kernel_size": 2, "stride": 2}),
        (ConvTranspose2d, nn.ConvTranspose2d, {"kernel_size": 2, "stride": 2}),
    ],
)
def test_convolutions_match_plain_form(generator, ours, plain, kwargs):
    conv = ours(3, 4, bias=False, **kwargs).double()
    reference = plain(3, 4, bias=False, **kwargs).double()
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64).requires_grad_()
    weight = conv.weight.detach().clone().requires_grad_()

    def apply(module):
        return lambda x, w: torch.func.functional_call(module, {"weight": w}, (x,))

    _assert_same(apply(conv), apply(reference), (x, weight))
    # under bf16 autocast: the same dtype and values as the plain module
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = conv.float()(x.float()), reference.float()(x.float())
    assert a.dtype == b.dtype == torch.bfloat16 and torch.equal(a, b)


def test_concat_matches_plain_form(generator):
    a = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    b = torch.randn(2, 2, 4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    _assert_same(concat_channels, lambda a, b: torch.cat([a, b], dim=1), (a, b))


def test_dual_training_gradient_matches_plain_layers(generator):
    """The tiny model's dual score matching loss and parameter gradients (double backprop) are
    those of the same network built from autograd's plain layers."""
    model = dc.build_energy_model("tiny").double()
    x = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.1, 2.0], dtype=torch.float64)
    y = x + t.sqrt()[:, None, None, None] * torch.randn(x.shape, generator=generator).double()
    cfg = LossConfig(time_weight=1.0)

    def loss_and_grads():
        model.zero_grad()
        loss = score_matching_terms(model, x, y, t, cfg).total(cfg).mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    written_out = {"_ConvBackward", "_GeluBackward", "_GainNormBackward", "_ConcatBackward"}
    assert _graph_node_names(model.energy(y, t).sum()) >= written_out
    ours = loss_and_grads()
    use_plain_layers(model)
    assert not _graph_node_names(model.energy(y, t).sum()) & written_out  # switched, all of it
    for a, b in zip(ours, loss_and_grads(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _graph_node_names(output: torch.Tensor) -> set[str]:
    """Class names of the autograd nodes that ``output`` was computed by."""
    names, stack, seen = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names
