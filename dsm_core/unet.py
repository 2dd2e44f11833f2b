"""The release's bias-free UNet f(y, t) (reference-spec §1.2); it knows nothing of energies."""

import torch
from torch import nn

from dsm_core.config import UNetConfig
from dsm_core.layers import (
    Conv2d,
    ConvTranspose2d,
    GainControlNorm,
    Gelu,
    NoiseLevelEmbedding,
    concat_channels,
)


class ConvLayer(nn.Module):
    """conv (no bias) -> gain-controlled norm -> nonlinearity, or a bare conv when ``bare``."""

    def __init__(self, conv: nn.Module, out_channels: int, cfg: UNetConfig, bare: bool = False):
        super().__init__()
        self.conv = conv
        self.norm = None if bare else GainControlNorm(out_channels, cfg.embed_dim, cfg.norm_eps)
        self.act = None if bare else (Gelu() if cfg.nonlinearity == "gelu" else nn.ReLU())

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv(h)
        if self.norm is None:
            return h
        return self.act(self.norm(h, embedding))


def _conv(cfg: UNetConfig, c_in: int, c_out: int) -> Conv2d:
    return Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=False)


def _down(c_in: int, c_out: int) -> Conv2d:
    return Conv2d(c_in, c_out, 2, stride=2, bias=False)


def _up(c_in: int, c_out: int) -> ConvTranspose2d:
    return ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)


def min_parameters(cfg: UNetConfig) -> int:
    """A lower bound on ``UNet(cfg)``'s parameter count, in Python integers (nothing is built).

    Counts the tensors every UNet has (``num_scales`` >= 1, blocks of >= 2 layers): the
    embedding MLP, the full-resolution convolutions into and out of decoder block 0 and encoder
    block 0's first one, the middle block's down- and up-sampling, and one norm per layer. Any
    field that is huge makes the bound huge, so a cap can be checked before a (meta-device)
    build that would overflow torch's size arithmetic.
    """
    e, f, b, k, c = (
        cfg.embed_dim,
        cfg.num_frequencies,
        cfg.base_width,
        cfg.kernel_size,
        cfg.channels,
    )
    w_mid = b * 2**cfg.num_scales
    embedding = 2 * f * e + e * e + 2 * e
    convs = (c * b + 2 * b * b + b * c) * k * k + 2 * (w_mid // 2) * w_mid * 4
    layers = cfg.num_scales * (cfg.encoder_layers + cfg.decoder_layers) + cfg.middle_layers - 1
    return embedding + convs + layers * b * (e + 2)


class UNet(nn.Module):
    """(y (B, C, H, W), t (B,)) -> f (B, C, H, W).

    Encoder block s (s = 0..S-1) works at width ``base * 2**s``; its first layer down-samples
    (2x2 conv, stride 2) except at s = 0. The middle block down-samples first and up-samples last
    (2x2 transposed conv). Decoder block s takes ``concat([previous, encoder_s])`` and ends with an
    up-sampling layer, except decoder 0, which ends with a bare conv to C channels.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if min(cfg.encoder_layers, cfg.decoder_layers) < 2 or cfg.middle_layers < 2:
            raise ValueError("every UNet block needs at least 2 layers (down/up-sampling + conv)")
        self.cfg = cfg
        self.concat = concat_channels  # (a per-model attribute: see layers.use_plain_layers)
        widths = [cfg.base_width * 2**s for s in range(cfg.num_scales + 1)]
        self.embedding = NoiseLevelEmbedding(
            cfg.num_frequencies, cfg.embed_dim, cfg.embed_t_min, cfg.embed_t_max, cfg.embed_log_t
        )
        self.encoder = nn.ModuleList()
        for s in range(cfg.num_scales):
            w = widths[s]
            first = _conv(cfg, cfg.channels, w) if s == 0 else _down(widths[s - 1], w)
            layers = [ConvLayer(first, w, cfg)]
            layers += [ConvLayer(_conv(cfg, w, w), w, cfg) for _ in range(cfg.encoder_layers - 1)]
            self.encoder.append(nn.ModuleList(layers))
        w_mid, w_last = widths[-1], widths[-2]
        middle = [ConvLayer(_down(w_last, w_mid), w_mid, cfg)]
        middle += [
            ConvLayer(_conv(cfg, w_mid, w_mid), w_mid, cfg) for _ in range(cfg.middle_layers - 2)
        ]
        middle.append(ConvLayer(_up(w_mid, w_last), w_last, cfg))
        self.middle = nn.ModuleList(middle)
        self.decoder = nn.ModuleList()  # decoder[s] is applied at scale s (coarsest first)
        for s in range(cfg.num_scales):
            w = widths[s]
            layers = [ConvLayer(_conv(cfg, 2 * w, w), w, cfg)]
            layers += [ConvLayer(_conv(cfg, w, w), w, cfg) for _ in range(cfg.decoder_layers - 2)]
            if s == 0:
                layers.append(ConvLayer(_conv(cfg, w, cfg.channels), cfg.channels, cfg, bare=True))
            else:
                layers.append(ConvLayer(_up(w, widths[s - 1]), widths[s - 1], cfg))
            self.decoder.append(nn.ModuleList(layers))

    @property
    def min_divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.cfg.num_scales

    def forward(
        self, y: torch.Tensor, t: torch.Tensor, embedding_offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """y (B, C, H, W), t (B,) noise variance -> f (B, C, H, W); ``embedding_offset`` (B, E)
        conditions the noise embedding on something besides t (``NoiseLevelEmbedding``)."""
        embedding = self.embedding(t, embedding_offset)  # (B, E)
        h = y
        skips = []
        for block in self.encoder:
            for layer in block:
                h = layer(h, embedding)
            skips.append(h)  # (B, w_s, H / 2**s, W / 2**s)
        for layer in self.middle:
            h = layer(h, embedding)
        for s in reversed(range(len(self.decoder))):
            h = self.concat(h, skips[s])  # previous output first
            for layer in self.decoder[s]:
                h = layer(h, embedding)
        return h
