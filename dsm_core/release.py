"""The authors' released checkpoints (``*.pth.tar``): a safe reader and the map onto our UNet.

A released file is ``torch.save(dict(step, args, state_dict, train_perf, test_perf))`` where
``args`` is an ``argparse.Namespace`` and the perf entries are instances of the authors' own
classes (reference-spec §1.8). It is read with the project's one restricted unpickler
(``dsm_core.safe_pickle``, also used for pickled dataset batches): tensors, numpy arrays and
scalars and ``argparse.Namespace`` load, references into modules that can run commands (os,
subprocess, builtins, ...) are refused, and every other class is replaced by an inert stand-in
that can only hold attributes (calling it with arguments is refused). No code from the
checkpoint's modules is ever imported or executed.
"""

import argparse
import collections
import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsm_core import safe_pickle
from dsm_core.config import EnergyConfig, Head, UNetConfig
from dsm_core.energy import EnergyModel, ScoreModel, model_from_config

log = logging.getLogger(__name__)


class ReleaseCheckpointError(RuntimeError):
    """A released checkpoint that cannot be read safely or does not fit our UNet."""


# What a torch.save'd dict of tensors and an argparse.Namespace needs besides numpy data (torch
# resolves its storage types itself); every other class becomes an inert stand-in.
_CHECKPOINT_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
}


def safe_load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` of a released checkpoint through ``dsm_core.safe_pickle``, nothing executed.

    Tensors, numpy arrays and scalars (e.g. ``np.float64(K)``), ``argparse.Namespace`` and plain
    data load; other classes become inert stand-ins holding their attributes.

    Raises:
        ReleaseCheckpointError: not a torch checkpoint, or a pickle that references code-running
            globals or calls an unknown one with arguments (the message names it).
    """
    path = Path(path)

    def report(unpickler: safe_pickle.SafeUnpickler) -> None:
        for name in unpickler.replaced:
            log.info("%s: %s replaced by an inert stand-in", path, name)

    module = safe_pickle.pickle_module(
        path, extra_globals=_CHECKPOINT_GLOBALS, inert_unknown=True, on_load=report
    )
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=module)
    except pickle.UnpicklingError as exc:
        raise ReleaseCheckpointError(f"{path}: refused while unpickling: {exc}") from exc
    except Exception as exc:  # not a torch file, truncated, corrupt
        raise ReleaseCheckpointError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, dict):
        raise ReleaseCheckpointError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------
# Key map


def release_key(our_key: str) -> str | None:
    """The released state_dict key of one of our UNet's keys (None if it has no counterpart).

    Their layer ``l`` of a block is the Sequential triple (conv ``3l``, norm ``3l+1``, GELU
    ``3l+2``); blocks are ``encoder.{s}``, ``middle_block``, ``decoder.{s}``; the noise
    embedding MLP is ``noise_var_embedding.time_embed``; everything sits under ``network.``.
    """
    parts = our_key.split(".")
    if parts[0] != "unet":
        return None  # e.g. our optional time_term, absent from the release
    if parts[1] == "embedding" and parts[2] == "mlp":
        return "network.noise_var_embedding.time_embed." + ".".join(parts[3:])
    if parts[1] in ("encoder", "decoder"):
        block, rest = f"{parts[1]}.{parts[2]}", parts[3:]
    elif parts[1] == "middle":
        block, rest = "middle_block", parts[2:]
    else:
        return None
    layer, module, *leaf = rest
    layer = int(layer)
    if module == "conv":
        return f"network.{block}.{3 * layer}.{'.'.join(leaf)}"
    if module == "norm":
        leaf = ["conditioning_embedding" if p == "conditioning" else p for p in leaf]
        return f"network.{block}.{3 * layer + 1}.{'.'.join(leaf)}"
    return None


def release_state_dict_keys(model: EnergyModel | ScoreModel) -> dict[str, str]:
    """{our key: their key} for every tensor of our model's state_dict that has a counterpart."""
    mapping = {}
    for key in model.state_dict():
        theirs = release_key(key)
        if theirs is not None:
            mapping[key] = theirs
    return mapping


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a DDP ``module.`` prefix if the checkpoint has one."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def infer_config(
    state_dict: dict[str, torch.Tensor],
    args: dict[str, Any],
    image_size: int = 64,
    head: Head | None = None,
) -> EnergyConfig:
    """The EnergyConfig of a released state_dict, read from tensor shapes (and args when clear).

    Args:
        state_dict: their tensors (keys ``network.*``).
        args: their argparse arguments as a dict (used for the score baseline and the
            embedding range when present).
        image_size: training image side (64 for all released models; not in the weights).
        head: force "inner_product" or "score"; None infers it from args.
    """

    def block_layers(prefix: str) -> int:
        indices = [
            int(m.group(1))
            for k in state_dict
            if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.weight$", k))
        ]
        if not indices:
            raise ReleaseCheckpointError(f"no tensors under {prefix}")
        return max(indices) // 3 + 1

    try:
        first = state_dict["network.encoder.0.0.weight"]  # (base, C, k, k)
        mlp = state_dict["network.noise_var_embedding.time_embed.0.weight"]  # (E, 2F)
    except KeyError as exc:
        raise ReleaseCheckpointError(f"not a released UNet state_dict: missing {exc}") from exc
    scales = {
        int(m.group(1)) for k in state_dict if (m := re.match(r"network\.encoder\.(\d+)\.", k))
    }
    network_kwargs = args.get("network_kwargs") or {}
    if not isinstance(network_kwargs, dict):
        network_kwargs = {}
    unet = UNetConfig(
        channels=int(first.shape[1]),
        base_width=int(first.shape[0]),
        num_scales=len(scales),
        encoder_layers=block_layers("network.encoder.0"),
        middle_layers=block_layers("network.middle_block"),
        decoder_layers=block_layers("network.decoder.0"),
        kernel_size=int(first.shape[-1]),
        embed_dim=int(mlp.shape[0]),
        num_frequencies=int(mlp.shape[1]) // 2,
        embed_t_min=float(network_kwargs.get("t_min", UNetConfig.embed_t_min)),
        embed_t_max=float(network_kwargs.get("t_max", UNetConfig.embed_t_max)),
    )
    if head is None:
        head = "score" if "denoiser" in str(args.get("model", "")).lower() else "inner_product"
    return EnergyConfig(image_size=image_size, unet=unet, head=head)


@dataclass(frozen=True)
class ReleaseModel:
    """A converted release: our model (with K) and facts about the source."""

    model: EnergyModel | ScoreModel
    step: int | None
    args: dict[str, Any]
    log_norm_source: str


def _plain(value: Any) -> Any:
    """A JSON-able rendering of an argparse value (stand-ins and tensors become strings)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def convert_release(
    path: str | Path,
    *,
    log_norm_nats: float | None = None,
    image_size: int = 64,
    head: Head | None = None,
) -> ReleaseModel:
    """Read a released checkpoint and load its weights into our UNet, checking every tensor.

    Args:
        path: the ``*.pth.tar`` file.
        log_norm_nats: K in nats; default ``test_perf.log_normalization_constant`` from the file.
        image_size: training image side (64 for the released models).
        head: "inner_product" (energy) or "score"; None infers it from ``args``.

    Returns:
        The converted model (eval mode) with K set, and the source facts.

    Raises:
        ReleaseCheckpointError: unsafe file, unused or missing tensors, shape mismatch, no K.
    """
    data = safe_load_checkpoint(path)
    if "state_dict" not in data:
        raise ReleaseCheckpointError(f"{path}: no 'state_dict' entry (keys {sorted(data)})")
    theirs = _strip_prefixes(data["state_dict"])
    args_obj = data.get("args")
    args = vars(args_obj) if isinstance(args_obj, argparse.Namespace) else {}
    config = infer_config(theirs, args, image_size=image_size, head=head)
    model = model_from_config(config)
    mapping = release_state_dict_keys(model)
    ours = model.state_dict()
    missing = sorted(t for t in mapping.values() if t not in theirs)
    unused = sorted(set(theirs) - set(mapping.values()))
    if missing or unused:
        raise ReleaseCheckpointError(
            f"{path}: tensors do not match our UNet: missing {missing[:6]}, unused {unused[:6]}"
        )
    converted = {}
    for our_key, their_key in mapping.items():
        tensor = theirs[their_key]
        if tuple(tensor.shape) != tuple(ours[our_key].shape):
            raise ReleaseCheckpointError(
                f"{path}: {their_key} has shape {tuple(tensor.shape)}, our {our_key} needs "
                f"{tuple(ours[our_key].shape)}"
            )
        converted[our_key] = tensor.to(ours[our_key].dtype)
    model.load_state_dict(converted, strict=True)
    source = "argument"
    if log_norm_nats is None and isinstance(model, EnergyModel):
        perf = data.get("test_perf")
        value = getattr(perf, "log_normalization_constant", None)
        if value is None:
            raise ReleaseCheckpointError(
                f"{path}: no test_perf.log_normalization_constant; pass the constant K "
                "(e.g. --log-norm 5845.43 for the grayscale release)"
            )
        log_norm_nats = float(torch.as_tensor(value).item())
        source = "test_perf.log_normalization_constant"
    if isinstance(model, EnergyModel):
        model.log_norm_nats = float(log_norm_nats)
    step = data.get("step")
    return ReleaseModel(
        model=model.eval(),
        step=int(step) if isinstance(step, int | float) else None,
        args={k: _plain(v) for k, v in args.items()},
        log_norm_source=source,
    )
