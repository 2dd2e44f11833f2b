"""Model folders (``model.safetensors`` + ``config.json``) from disk or the Hub, strictly.

Nothing is ever unpickled. ``config.json`` holds the architecture (EnergyConfig), the log
normalisation constant K and free-form metadata (data, steps, ...); loading refuses any unknown
field, missing or unexpected tensor and shape mismatch, naming it.
"""

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dsm_core.config import EnergyConfig, from_dict, to_dict
from dsm_core.energy import EnergyModel, ScoreModel, model_from_config

log = logging.getLogger(__name__)

FORMAT = "dsm-explorer/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Files a model folder may carry besides the weights; fetched together from the Hub.
COMPANION_FILES = ("test_logp_db.npz", "test_images.npz", "metrics.json", "README.md")
_CONFIG_KEYS = {"format", "model", "log_norm_nats", "metadata"}


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
    write_atomic(
        folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(document, indent=2) + "\n")
    )
    return folder


def read_json_object(path: Path, error: type[Exception]) -> dict:
    """A JSON file holding one object; raises ``error``, naming the file, otherwise."""
    try:
        document = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise error(f"{path}: expected a JSON object")
    return document


def read_config(folder: str | Path) -> tuple[EnergyConfig, float, dict]:
    """(architecture, K in nats, metadata) from a model folder's ``config.json``."""
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
    log_norm = document.get("log_norm_nats")
    return config, 0.0 if log_norm is None else float(log_norm), document.get("metadata") or {}


def load_model_folder(folder: str | Path, device: str | torch.device = "cpu"):
    """Rebuild and strictly load the model in a local folder; eval mode, frozen parameters."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: not a folder")
    config, log_norm_nats, metadata = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: missing (a model folder needs {WEIGHTS_FILE})")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: unreadable safetensors file ({exc})") from exc
    model = model_from_config(config, log_norm_nats)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: tensors do not match the config: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelLoadError(
                f"{weights}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.metadata = metadata
    model.source = str(folder)
    model.to(device).eval().requires_grad_(False)
    return model


def fetch_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Download (or find in the local cache) a model repository; honours HF_HUB_OFFLINE."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        path = snapshot_download(
            repo_id, revision=revision, allow_patterns=[WEIGHTS_FILE, CONFIG_FILE, *COMPANION_FILES]
        )
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
        An ``EnergyModel`` (or ``ScoreModel``) with frozen parameters and ``.metadata``.

    Raises:
        ModelLoadError: with a message naming what is missing or wrong.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return load_model_folder(path, device)
    if path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise ModelLoadError(f"{source}: no such model folder")
    model = load_model_folder(fetch_from_hub(str(source), revision), device)
    model.source = f"{source}@{revision}" if revision else str(source)
    return model
