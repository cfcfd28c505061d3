"""The model file: hyperparameters, weights and metadata in one ``torch.save`` archive.

Loading uses ``torch.load(weights_only=True)``, so a model file can hold only
tensors and plain Python values and never runs code. Metadata (a dict of plain
values) records at least: ``elements`` (atomic numbers), ``grain_cutoff`` and
``intra_cutoff`` (Å),
``grains`` (how grains were made: "molecule", "residue", "atom", ...),
``grain_formulas`` (Hill formulas of the grains seen in training), ``units``
and the package ``version``; training adds its config hash and errors.
"""
import os
from typing import Any, Dict, Tuple

import torch

from .model import CGAAModel

FORMAT = "cgaa-openmm-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable cgaa-openmm model."""


def save_model(path: str, model: CGAAModel, metadata: Dict[str, Any]) -> None:
    """Write ``model`` (weights in its current dtype) and ``metadata`` to ``path``."""
    from . import __version__
    metadata = dict(metadata, elements=list(model.elements), grain_cutoff=model.grain_cutoff,
                    intra_cutoff=float(model.hyperparameters["intra_cutoff"]),
                    units={"length": "angstrom", "energy": "eV", "forces": "eV/angstrom"},
                    version=__version__)
    archive = dict(format=FORMAT, format_version=FORMAT_VERSION, metadata=metadata,
                   hyperparameters=dict(model.hyperparameters),
                   atomic_energies=model.atomic_energies.tolist(),
                   state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()})
    tmp = f"{path}.tmp"
    torch.save(archive, tmp)
    os.replace(tmp, path)


def load_model(path: str) -> Tuple[CGAAModel, Dict[str, Any]]:
    """Read a model file; raise :class:`ModelFileError` naming the problem if it is not one."""
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    try:
        archive = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"{path} is not a cgaa-openmm model file (unreadable: {error})") from error
    if not isinstance(archive, dict) or archive.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a cgaa-openmm model file (no '{FORMAT}' header)")
    if archive.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {archive.get('format_version')} is not "
                             f"supported (this cgaa-openmm reads version {FORMAT_VERSION})")
    metadata = archive["metadata"]
    try:
        state = archive["state_dict"]
        dtype = state["atomic_energies"].dtype
        model = CGAAModel(metadata["elements"], archive["atomic_energies"], **archive["hyperparameters"])
        model.to(dtype).load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: corrupt cgaa-openmm model file ({error})") from error
    return model.eval(), metadata
