"""Compiled cores kept on disk, so that a new process makes its first force in about a second.

Compiling a model (:func:`~cgaa_openmm.torchforce.compiled_core`) takes seconds; loading the
compiled TorchScript file takes a fraction of that. :func:`cached_core` keeps each compiled core
in a folder, named by a hash of everything that decides its code and numbers: the model's weights
and hyperparameters, the precision and kind of system, the versions of torch and e3nn, and the
source of this package. A file that does not load is compiled again and replaced; files are
written whole (a temporary file, then renamed), so processes that share the folder never read
half a file.

The folder is ``$CGAA_OPENMM_CACHE`` if set (an empty value turns the cache off), else
``$XDG_CACHE_HOME/cgaa-openmm`` (``~/.cache/cgaa-openmm``). Each file is the size of the model's
weights plus its code (1-2 MB for the shipped models); delete the folder to clear it.
"""
import functools
import hashlib
import json
import os
import tempfile
from importlib.metadata import version
from typing import Callable, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> Optional[str]:
    """The cache folder, or None when ``CGAA_OPENMM_CACHE`` is set empty."""
    folder = os.environ.get("CGAA_OPENMM_CACHE")
    if folder is None:
        folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cgaa-openmm")
    return folder or None


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 of this package's Python source (the code that compiling a core traces), read once."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(HERE):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, HERE).encode())
                with open(path, "rb") as file:
                    digest.update(file.read())
    return digest.hexdigest()


def core_key(model: torch.nn.Module, dtype: torch.dtype, kind: dict) -> str:
    """The name of a compiled core's file: a hash of the model's weights and hyperparameters, the
    precision it is compiled in, the kind of system, torch, e3nn and this package's source. (The
    model as loaded names the cores of both precisions: making its float64 copy costs seconds.)"""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(hyperparameters=model.hyperparameters, dtype=str(dtype), kind=kind,
                                  torch=torch.__version__, e3nn=version("e3nn"), source=source_hash()),
                             sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_core(key: str, compile_core: Callable[[], torch.jit.ScriptModule]) -> torch.jit.ScriptModule:
    """The compiled core of ``key`` from the cache folder, or ``compile_core()`` saved there."""
    folder = cache_dir()
    if folder is None:
        return compile_core()
    path = os.path.join(folder, f"core-{key}.pt")
    if os.path.exists(path):
        try:
            return torch.jit.load(path, map_location="cpu")
        except Exception:  # noqa: BLE001  (an unreadable file is compiled again and replaced)
            pass
    core = compile_core()
    temporary = None
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(handle)
        torch.jit.save(core, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError):
        # a read-only or full disk costs the next process a compilation, nothing else
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
    return core
