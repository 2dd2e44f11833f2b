"""Model folders (``model.safetensors`` + ``config.json``) from disk or the Hub, strictly.

Nothing is ever unpickled. ``config.json`` holds the architecture (EnergyConfig), the log
normalisation constant K and free-form metadata (data, steps, ...); loading refuses any unknown
field, missing or unexpected tensor and shape mismatch, naming it.
"""

import dataclasses
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dsm_core.config import EnergyConfig, from_dict, to_dict
from dsm_core.energy import EnergyModel, ScoreModel, model_from_config
from dsm_core.unet import min_parameters

log = logging.getLogger(__name__)

FORMAT = "dsm-explorer/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_CONFIG_KEYS = {"format", "model", "log_norm_nats", "metadata"}
# Limits checked before anything is allocated: the release's imagenet64 preset has 8.6 M
# parameters; the bundled companion files are well under a megabyte.
MAX_PARAMETERS = 64_000_000
MAX_IMAGE_SIZE = 4096
MAX_JSON_BYTES = 1_000_000
MAX_BLOCK_LAYERS = 64  # layers per UNet block (the presets have 2 or 3)
MAX_HEADER_BYTES = 16_000_000  # a safetensors header (names, shapes, offsets)
COMPANION_MAX_BYTES = {
    "test_logp_db.npz": 64_000_000,
    "test_images.npz": 64_000_000,
    "metrics.json": MAX_JSON_BYTES,
    "README.md": MAX_JSON_BYTES,
}
# Files a model folder may carry besides the weights; fetched together from the Hub.
COMPANION_FILES = tuple(COMPANION_MAX_BYTES)
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


class ModelLoadError(RuntimeError):
    """A model folder or Hub repository that cannot be loaded; the message says why."""


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process umask (e.g. 0o644).

    Read from /proc (Linux), which leaves the umask alone; elsewhere by setting and restoring it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see a partial file.

    The file gets ``new_file_mode()``, like every other file the project writes: set after
    ``write`` because mkstemp makes 0600 and some writers (safetensors >= 0.8) replace the
    temporary file with one of their own.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """A document for strict JSON: NaN/inf -> None, numpy scalars -> Python, keys -> str."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_text(document: Any, indent: int | None = 2) -> str:
    """``document`` as strict JSON text (``json_safe``: NaN/inf -> null), no trailing newline.

    Raises:
        TypeError: a value JSON cannot hold (after ``json_safe``).
    """
    return json.dumps(json_safe(document), indent=indent, allow_nan=False)


def write_json(path: str | Path, document: Any) -> None:
    """Write ``document`` as strict, indented JSON (``json_text``), atomically.

    Raises:
        TypeError: a value JSON cannot hold (after ``json_safe``).
    """
    text = json_text(document) + "\n"
    write_atomic(Path(path), lambda p: p.write_text(text))


def training_data_name(metadata: dict[str, Any]) -> str | None:
    """The training data's name recorded in a model's metadata (``data.name``, else the run's
    ``train_config.data.name``, as folders exported before ``data`` existed record it), or None."""
    name = (metadata.get("data") or {}).get("name") or (
        (metadata.get("train_config") or {}).get("data") or {}
    ).get("name")
    return str(name) if name else None


def model_config_dict(model: EnergyModel | ScoreModel, metadata: dict | None = None) -> dict:
    """The JSON document ``config.json`` stores for a model."""
    return {
        "format": FORMAT,
        "model": to_dict(model.config),
        "log_norm_nats": getattr(model, "log_norm_nats", None),
        "metadata": dict(metadata if metadata is not None else getattr(model, "metadata", {})),
    }


def save_model(
    model: EnergyModel | ScoreModel, folder: str | Path, metadata: dict | None = None
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed).

    Args:
        model: the model; a DDP wrapper must be unwrapped first.
        folder: destination folder; existing files of the same names are replaced atomically.
        metadata: JSON-able facts about the model (data, steps, ...); defaults to
            ``model.metadata`` when present.

    Returns:
        The folder path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    document = model_config_dict(model, metadata)
    write_atomic(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    write_json(folder / CONFIG_FILE, document)  # strict JSON: a NaN in metadata becomes null
    return folder


def describe_bad_download(path: Path) -> str | None:
    """What a file that should be weights or JSON actually is, for common bad downloads, or None.

    Recognised from its first bytes: a Git LFS pointer (cloned without git-lfs), an HTML page
    (a login or error page saved in place of the file), a UTF-8 byte-order mark before JSON.
    """
    with open(path, "rb") as file:
        head = file.read(512)
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return (
            f"{path.name} is a Git LFS pointer file ({path.stat().st_size} bytes), not the file "
            "itself: the repository was cloned without Git LFS; run `git lfs install` and "
            "`git lfs pull` in it, or download the file from the Hub"
        )
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return f"{path.name} is an HTML page (a login or error page saved in its place)"
    if head.startswith(b"\xef\xbb\xbf") and path.suffix == ".json":
        return (
            f"{path.name} starts with a UTF-8 byte-order mark (as some Windows editors save); "
            "JSON must not: save it as UTF-8 without BOM"
        )
    return None


def read_json_object(path: Path, error: type[Exception], max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON file holding one object; raises ``error``, naming the file, otherwise.

    Files over ``max_bytes``, LFS pointers, HTML pages and files with a byte-order mark are
    refused with a message saying what they are.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size:,} bytes is more than the limit of {max_bytes:,} for JSON")
    problem = describe_bad_download(path)
    if problem is not None:
        raise error(f"{path}: {problem}")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise error(f"{path}: expected a JSON object")
    return document


def _shown(value: int | float, spec: str = "") -> str:
    """A config value for a one-line message; an integer of more than 30 digits as ``~10**N``."""
    if isinstance(value, int) and value.bit_length() > 100:
        sign = "-" if value < 0 else ""
        return f"{sign}~10**{int((value.bit_length() - 1) * math.log10(2))}"
    return format(value, spec)


def check_config_values(config: EnergyConfig, where: str = "config") -> None:
    """Refuse values that would give NaN or nonsense before anything is built.

    Every number must be finite, every integer and ``t_min`` >= 0; ``image_size`` (at most
    ``MAX_IMAGE_SIZE``), ``data_var``, ``channels``, ``base_width``, ``num_scales``,
    ``embed_dim`` and ``num_frequencies`` positive; ``kernel_size`` odd (a "same" convolution);
    the encoder, middle and decoder blocks 2 to ``MAX_BLOCK_LAYERS`` layers; ``2 ** num_scales``
    at most ``image_size``. Widths are capped later, by the parameter count
    (``expected_tensor_shapes``). Takes microseconds whatever the values (nothing is built).

    Raises:
        ModelLoadError: naming the field and its value.
    """

    def walk(obj: object, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value, name = getattr(obj, f.name), f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{name}.")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                continue
            elif isinstance(value, float) and not math.isfinite(value):
                raise ModelLoadError(f"{where}: {name} = {value} is not a finite number")
            elif isinstance(value, int) and value < 0:
                raise ModelLoadError(f"{where}: {name} = {_shown(value)} must be >= 0")

    walk(config, "model.")
    positive = {
        "model.image_size": config.image_size,
        "model.data_var": config.data_var,
        "model.unet.channels": config.unet.channels,
        "model.unet.base_width": config.unet.base_width,
        "model.unet.kernel_size": config.unet.kernel_size,
        "model.unet.num_scales": config.unet.num_scales,
        "model.unet.embed_dim": config.unet.embed_dim,
        "model.unet.num_frequencies": config.unet.num_frequencies,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ModelLoadError(f"{where}: {name} = {_shown(value)} must be positive")
    if config.unet.kernel_size % 2 == 0:
        raise ModelLoadError(
            f"{where}: model.unet.kernel_size = {_shown(config.unet.kernel_size)} must be odd"
        )
    for block in ("encoder", "middle", "decoder"):
        layers = getattr(config.unet, f"{block}_layers")
        if not 2 <= layers <= MAX_BLOCK_LAYERS:
            raise ModelLoadError(
                f"{where}: model.unet.{block}_layers = {_shown(layers)} must be from 2 to "
                f"{MAX_BLOCK_LAYERS}"
            )
    if config.t_min < 0:
        raise ModelLoadError(f"{where}: model.t_min = {config.t_min} must be >= 0")
    if config.image_size > MAX_IMAGE_SIZE:
        raise ModelLoadError(
            f"{where}: model.image_size = {_shown(config.image_size)} is more than {MAX_IMAGE_SIZE}"
        )
    if config.unet.num_scales >= config.image_size.bit_length():  # 2**num_scales > image_size
        raise ModelLoadError(
            f"{where}: model.unet.num_scales = {_shown(config.unet.num_scales)} needs images of "
            f"at least 2**num_scales pixels, model.image_size is {config.image_size}"
        )


def read_config(folder: str | Path) -> tuple[EnergyConfig, float | None, dict]:
    """(architecture, K in nats, metadata) from a model folder's ``config.json``, checked.

    K is required and finite for energy heads, and None for score networks.

    Raises:
        ModelLoadError: missing, oversized or malformed file, unknown field, or a value out of
            range (named).
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (a model folder needs {CONFIG_FILE})")
    document = read_json_object(path, ModelLoadError)
    unknown = sorted(set(document) - _CONFIG_KEYS)
    if unknown:
        raise ModelLoadError(f"{path}: unknown field(s) {unknown}")
    if document.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: format {document.get('format')!r}, expected {FORMAT!r}")
    if "model" not in document:
        raise ModelLoadError(f"{path}: missing field 'model'")
    try:
        config = from_dict(EnergyConfig, document["model"])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{path}: metadata must be a JSON object")
    if "t_min" not in document["model"]:
        # saved before models knew their floor: the run's noise range says where it was trained
        trained_t_min = ((metadata.get("train_config") or {}).get("noise") or {}).get("t_min")
        if isinstance(trained_t_min, int | float) and not isinstance(trained_t_min, bool):
            config = dataclasses.replace(config, t_min=float(trained_t_min))
    check_config_values(config, str(path))
    log_norm = document.get("log_norm_nats")
    if config.head == "score":
        log_norm = None  # a score network has no energy, so no constant
    elif isinstance(log_norm, bool) or not isinstance(log_norm, int | float):
        raise ModelLoadError(
            f"{path}: log_norm_nats = {log_norm!r}: an energy model needs its normalisation "
            "constant K in nats (a number); without it every log p would be shifted"
        )
    elif not math.isfinite(log_norm):
        raise ModelLoadError(f"{path}: log_norm_nats = {log_norm} is not a finite number")
    return config, None if log_norm is None else float(log_norm), metadata


def expected_tensor_shapes(
    config: EnergyConfig, max_parameters: int = MAX_PARAMETERS
) -> dict[str, tuple[int, ...]]:
    """The state dict's names and shapes a config implies, built on the meta device (no memory).

    ``unet.min_parameters`` is checked against the cap first, so absurd widths are refused in
    microseconds instead of overflowing torch's size arithmetic. Expects a config that passed
    ``check_config_values`` (block sizes bound the build's time).

    Raises:
        ModelLoadError: the config cannot be built, or has more than ``max_parameters`` values.
    """
    least = min_parameters(config.unet)
    if least > max_parameters:
        raise ModelLoadError(
            f"the config describes at least {_shown(least, ',')} parameters, more than the limit "
            f"of {max_parameters:,}; refused before allocating anything"
        )
    try:
        with torch.device("meta"):
            skeleton = model_from_config(config)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"the config does not describe a buildable model: {exc}") from exc
    shapes = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    total = sum(math.prod(shape) for shape in shapes.values())
    if total > max_parameters:
        raise ModelLoadError(
            f"the config describes {total:,} parameters, more than the limit of "
            f"{max_parameters:,}; refused before allocating anything"
        )
    return shapes


def max_weights_bytes(num_parameters: int) -> int:
    """The largest ``model.safetensors`` that ``num_parameters`` values can need, in bytes:
    all float64, plus a header of at most ``MAX_HEADER_BYTES``."""
    return num_parameters * 8 + MAX_HEADER_BYTES


def check_weights_header(weights: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Compare a safetensors file's header (names, shapes, dtypes) with ``expected``; no data read.

    Raises:
        ModelLoadError: a bad download, an oversized or unreadable file, a missing or unexpected
            tensor, a shape mismatch, or a non-float tensor (each named).
    """
    problem = describe_bad_download(weights)
    if problem is not None:
        raise ModelLoadError(f"{weights}: {problem}")
    most = max_weights_bytes(sum(math.prod(s) for s in expected.values()))
    size = weights.stat().st_size
    if size > most:
        raise ModelLoadError(
            f"{weights}: {size:,} bytes is more than the config's {len(expected)} tensors can "
            f"need ({most:,} bytes)"
        )
    try:
        with safe_open(str(weights), framework="pt") as file:
            header = {
                name: (tuple(file.get_slice(name).get_shape()), file.get_slice(name).get_dtype())
                for name in file.keys()  # noqa: SIM118 - safe_open has keys(), no __iter__
            }
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: unreadable safetensors file ({exc})") from exc
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: tensors do not match the config: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, (shape, dtype) in header.items():
        if shape != expected[name]:
            raise ModelLoadError(
                f"{weights}: tensor {name!r} has shape {shape}, the config needs {expected[name]}"
            )
        if dtype not in FLOAT_DTYPES:
            raise ModelLoadError(
                f"{weights}: tensor {name!r} is {dtype}; weights must be floating point "
                f"({', '.join(sorted(FLOAT_DTYPES))})"
            )


def check_companion_sizes(folder: Path) -> None:
    """Refuse a folder whose companion files are larger than ``COMPANION_MAX_BYTES`` allows."""
    for name, limit in COMPANION_MAX_BYTES.items():
        path = folder / name
        if path.is_file() and path.stat().st_size > limit:
            raise ModelLoadError(
                f"{path}: {path.stat().st_size:,} bytes is more than the limit of {limit:,}"
            )


def load_model_folder(
    folder: str | Path,
    device: str | torch.device = "cpu",
    *,
    max_parameters: int = MAX_PARAMETERS,
    source: str | None = None,
):
    """Validate, then rebuild and strictly load the model in a local folder; eval mode, frozen.

    Before anything is allocated: the config's values (``read_config``), the companion files'
    sizes, the parameter count the config implies (built on the meta device) and the weights'
    safetensors header (names, shapes, float dtypes). Then the weights are read and must be
    finite. ``model.source`` is ``source`` (what the user named, e.g. ``owner/name@rev``), or the
    folder.

    Raises:
        ModelLoadError: naming the file, field or tensor at fault.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: not a folder")
    check_companion_sizes(folder)
    config, log_norm_nats, metadata = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: missing (a model folder needs {WEIGHTS_FILE})")
    check_weights_header(weights, expected_tensor_shapes(config, max_parameters))
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: unreadable safetensors file ({exc})") from exc
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{weights}: tensor {name!r} holds NaN or infinite values")
    model = model_from_config(config, 0.0 if log_norm_nats is None else log_norm_nats)
    model.load_state_dict(state, strict=True)
    model.metadata = metadata
    model.source = str(folder) if source is None else source
    model.to(device).eval().requires_grad_(False)
    return model


@dataclass(frozen=True)
class ModelSource:
    """Where a model named by the user lives once found.

    Attributes:
        folder: the local folder holding ``model.safetensors`` + ``config.json``.
        from_hub: whether it is a Hugging Face Hub snapshot (else a folder the user named).
        key: the source as the user named it, ``owner/name@revision`` for a Hub revision.
    """

    folder: Path
    from_hub: bool
    key: str


def source_key(source: str, revision: str | None = None) -> str:
    """A model source as the user names it: ``source``, or ``source@revision`` for a Hub one."""
    return f"{source}@{revision}" if revision else source


def resolve_source(source: str | Path, revision: str | None = None) -> ModelSource:
    """The one rule for "local folder or Hub id?": an existing folder is used as it is; anything
    else that looks like ``owner/name`` (one slash, not starting with ``.``, ``/`` or ``~``) is
    fetched from the Hub (or found in its local cache).

    Args:
        source: a folder path or a Hub repo id.
        revision: Hub branch, tag or commit (ignored for folders).

    Returns:
        The resolved ``ModelSource``.

    Raises:
        ModelLoadError: no such folder, repository or revision, or no network.
    """
    text = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return ModelSource(path, False, text)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ModelLoadError(f"{source}: no such model folder")
    return ModelSource(fetch_from_hub(text, revision), True, source_key(text, revision))


def check_hub_sizes(where: str, sizes: dict[str, int]) -> None:
    """Refuse, before any download, files the Hub lists larger than a local folder may hold.

    Args:
        where: the source as the user named it (``owner/name@revision``), for the message.
        sizes: file name -> size in bytes, as the Hub reports it (an LFS file's real size).

    The caps are the local checks': ``MAX_JSON_BYTES`` for ``config.json``,
    ``COMPANION_MAX_BYTES``, and for the weights ``max_weights_bytes(MAX_PARAMETERS)`` (the
    config-specific bound is checked after download, by ``load_model_folder``).

    Raises:
        ModelLoadError: naming the file, its size and the limit.
    """
    limits = {
        CONFIG_FILE: MAX_JSON_BYTES,
        WEIGHTS_FILE: max_weights_bytes(MAX_PARAMETERS),
        **COMPANION_MAX_BYTES,
    }
    for name, size in sizes.items():
        if name in limits and size > limits[name]:
            raise ModelLoadError(
                f"{where}: {name} is {size:,} bytes on the Hub, more than the limit of "
                f"{limits[name]:,}; refused before downloading"
            )


def hub_file_sizes(repo_id: str, revision: str | None, names: list[str]) -> dict[str, int] | None:
    """File name -> size in bytes of ``names`` in a Hub repository (absent files left out), from
    one metadata request (``HfApi.get_paths_info``, nothing downloaded); None when the Hub does
    not answer (HF_HUB_OFFLINE=1, no network, a timeout).

    Raises:
        huggingface_hub's HFValidationError or HfHubHTTPError (repository or revision not found,
            ...): the Hub answered, and ``fetch_from_hub`` says what it answered.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    try:
        entries = HfApi().get_paths_info(repo_id, names, revision=revision)
    except (HFValidationError, HfHubHTTPError):
        raise
    except Exception as exc:  # no answer; the transport's error types differ by hub version
        log.info("no file sizes from the Hub for %s (%s); using the local cache", repo_id, exc)
        return None
    sizes = {}
    for entry in entries:
        size = getattr(entry, "size", None)  # folders have none
        if size is not None:
            lfs = getattr(entry, "lfs", None)
            sizes[entry.path] = max(size, lfs.size) if lfs is not None else size
    return sizes


def fetch_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Download (or find in the local cache) a model repository; honours HF_HUB_OFFLINE.

    Online, the sizes the Hub lists are checked (``check_hub_sizes``) before anything is
    downloaded; offline or without network the cached snapshot is used as it is (its files are
    checked on disk by ``load_model_folder``).

    Raises:
        ModelLoadError: an invalid id, no such repository or revision, a file over its size
            limit, or no network and nothing cached.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = source_key(repo_id, revision)
    names = [WEIGHTS_FILE, CONFIG_FILE, *COMPANION_FILES]
    try:
        sizes = hub_file_sizes(repo_id, revision, names)
        if sizes is not None:
            check_hub_sizes(where, sizes)
        path = snapshot_download(repo_id, revision=revision, allow_patterns=names)
    except HFValidationError as exc:
        raise ModelLoadError(
            f"{repo_id!r} is neither an existing folder nor a valid Hub repo id"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"Hub repository {repo_id!r} not found (or private)") from exc
    except RevisionNotFoundError as exc:
        raise ModelLoadError(f"revision {revision!r} not found in {repo_id!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(
            f"cannot fetch {where}: no network (or HF_HUB_OFFLINE=1) and it is not in the "
            "local Hugging Face cache; download it once online, or pass a local folder"
        ) from exc
    except OSError as exc:  # connection errors
        raise ModelLoadError(f"cannot fetch {where} from the Hub: {exc}") from exc
    return Path(path)


def load_model(
    source: str | Path, *, revision: str | None = None, device: str | torch.device = "cpu"
):
    """Load a model from a local folder or a Hugging Face Hub repo id, in eval mode.

    Args:
        source: a folder holding ``model.safetensors`` + ``config.json``, or ``owner/name``.
        revision: Hub branch, tag or commit (ignored for folders).
        device: where to put the parameters.

    Returns:
        An ``EnergyModel`` (or ``ScoreModel``) with frozen parameters, ``.metadata`` and
        ``.source``.

    Raises:
        ModelLoadError: with a message naming what is missing or wrong.
    """
    resolved = resolve_source(source, revision)
    # a folder keeps its path as given (expanded); a Hub model its id and revision
    return load_model_folder(
        resolved.folder, device, source=resolved.key if resolved.from_hub else None
    )
