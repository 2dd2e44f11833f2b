"""The one restricted unpickler: numpy arrays and scalars and plain Python data, never code.

Used for pickled dataset batches (CIFAR-10, ImageNet64; ``safe_unpickle``) and, through
``torch.load(pickle_module=...)``, for the authors' released checkpoints
(``dsm_core.release.safe_load_checkpoint``). A pickle runs code only through the globals it
names (``find_class``); here those resolve to a fixed table of data constructors:

- numpy arrays and scalars (``_reconstruct``, ``_frombuffer``, ``scalar``, ``ndarray``, ``dtype``
  and the ``numpy.dtypes.*DType`` classes), which only rebuild values from bytes;
- ``_codecs.encode`` restricted to latin-1 (how protocol 2 pickles bytes);
- whatever a caller adds in ``extra_globals`` (torch's tensor rebuild functions for checkpoints).

Any other global is refused (``pickle.UnpicklingError``, naming it) before it is imported, or,
with ``inert_unknown=True``, replaced by an inert stand-in class that can hold attributes but
refuses to be called with arguments; globals of modules that can run commands, import code or
touch files (``DANGEROUS_MODULES``) are refused in both modes.
"""

import pickle
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# Never referenced by a legitimate data file or checkpoint: refused even with inert_unknown.
DANGEROUS_MODULES = frozenset(
    {
        "builtins",
        "__builtin__",
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "shutil",
        "importlib",
        "runpy",
        "pickle",
        "_pickle",
        "marshal",
        "socket",
        "ctypes",
        "code",
        "codeop",
        "pty",
        "webbrowser",
        "multiprocessing",
        "signal",
        "types",
        "functools",
        "operator",
        "pdb",
        "platform",
        "tempfile",
        "io",
        "_io",
        "pathlib",
        "urllib",
        "http",
        "requests",
        "copyreg",
        "_codecs",  # only the latin-1 encode below
        "codecs",
    }
)

Globals = Mapping[tuple[str, str], Any]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, restricted to latin-1."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _data_globals() -> Globals:
    """The globals a pickle of numpy arrays/scalars, dicts, lists, bytes and numbers needs."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {}
    for package in ("numpy.core", "numpy._core"):  # numpy 1 and 2 spell the module differently
        # protocols 0-4: np.ndarray.__reduce__ -> _reconstruct(ndarray, shape, dtype) + setstate
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar  # np.float64(K) etc.
        # protocol 5: _frombuffer(buffer, dtype, shape, order)
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name in dir(np.dtypes):
        if re.fullmatch(r"\w+DType", name):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    allowed[("_codecs", "encode")] = _latin1_encode
    return types.MappingProxyType(allowed)


DATA_GLOBALS = _data_globals()


class _InertObject:
    """Stand-in for a class named in a pickle: stores attributes, runs no code.

    Unpickling creates instances with ``cls.__new__(cls)`` and fills ``__dict__``; any call with
    arguments (how a malicious pickle would use a function) is refused.
    """

    def __new__(cls, *args: Any, **kwargs: Any):
        if args or kwargs:
            raise pickle.UnpicklingError(
                f"refusing to call {cls.__qualname__} with arguments while unpickling"
            )
        return super().__new__(cls)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {vars(self)}>"


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from ``DATA_GLOBALS`` + ``extra_globals``.

    Args:
        file: the binary stream.
        source: named in error messages (a path, or a description).
        extra_globals: more (module, name) -> object entries the caller vouches for.
        inert_unknown: replace other globals (outside ``DANGEROUS_MODULES``) by inert stand-ins
            instead of refusing them.
        encoding: how Python 2 ``str`` is read ("bytes" keeps CIFAR's byte keys).
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        source: str | Path = "pickle",
        extra_globals: Globals | None = None,
        inert_unknown: bool = False,
        encoding: str = "bytes",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = {**DATA_GLOBALS, **(extra_globals or {})}
        self._inert_unknown = inert_unknown
        self.replaced: list[str] = []  # the globals given inert stand-ins, for logging

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        full_name = f"{module}.{name}"
        if self._inert_unknown and module.split(".", 1)[0] not in DANGEROUS_MODULES:
            stub = type(name, (_InertObject,), {})
            stub.__qualname__ = full_name
            self.replaced.append(full_name)
            return stub
        raise pickle.UnpicklingError(
            f"{self._source}: refusing to load global {full_name}, which could run code; only "
            "numpy arrays and scalars, dicts, lists, bytes, str and numbers are allowed"
        )


def safe_unpickle(path: str | Path) -> Any:
    """Load a pickle file that may contain only numpy arrays/scalars and plain Python data.

    Raises:
        pickle.UnpicklingError: if the pickle names any other global (e.g. ``os.system``);
            nothing named by such a pickle is imported or called.
    """
    path = Path(path)
    with open(path, "rb") as file:
        return SafeUnpickler(file, source=path).load()


def pickle_module(
    source: str | Path,
    *,
    extra_globals: Globals | None = None,
    inert_unknown: bool = False,
    on_load: Callable[[SafeUnpickler], None] | None = None,
) -> types.ModuleType:
    """A stand-in for the ``pickle`` module, for ``torch.load(pickle_module=...)``.

    torch subclasses ``pickle_module.Unpickler`` (adding its storage types and tensor
    ``persistent_load``), so every global still goes through ``SafeUnpickler.find_class``.
    ``on_load(unpickler)`` is called after each load (e.g. to log ``unpickler.replaced``).
    """

    class Unpickler(SafeUnpickler):
        def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
            kwargs.pop("errors", None)
            super().__init__(
                file,
                source=source,
                extra_globals=extra_globals,
                inert_unknown=inert_unknown,
                encoding=kwargs.pop("encoding", "utf-8"),
            )

        def load(self) -> Any:
            result = super().load()
            if on_load is not None:
                on_load(self)
            return result

    def load(file: BinaryIO, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    module = types.ModuleType(f"{__name__}.restricted")
    module.Unpickler = Unpickler
    module.load = load
    module.UnpicklingError = pickle.UnpicklingError
    return module
