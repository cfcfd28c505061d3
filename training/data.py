"""Reference data: extended XYZ (read by ASE) -> tensors -> batched model inputs.

Units: Å, eV, eV/Å. Grains come from a per-atom integer column (``molID`` for
the carbonates); isolated-atom configurations (``config_type=IsolatedAtom``)
give the per-element reference energies E0.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from ase.io import read

from cgaa_openmm.graph import build_graph


@dataclass
class Config:
    """One labelled configuration with its precomputed graph (all tensors)."""
    positions: torch.Tensor     # (N, 3) Å
    numbers: torch.Tensor       # (N,) atomic numbers
    grain: torch.Tensor         # (N,) grain index, 0..G-1
    n_grains: int
    energy: float               # eV
    forces: torch.Tensor        # (N, 3) eV/Å
    cell: torch.Tensor          # (3, 3) Å, rows a, b, c
    periodic: bool
    graph: Optional[Dict[str, torch.Tensor]] = None


def read_configs(path: str, energy_key: str = "energy_xtb", forces_key: str = "forces_xtb",
                 grain_key: str = "molID", grains: str = "column") -> List[Config]:
    """Read an extended XYZ file; ``grains`` is ``"column"`` (from ``grain_key``) or ``"atom"``.

    Isolated-atom configurations are skipped (see :func:`isolated_atom_energies`).
    """
    configs = []
    for k, atoms in enumerate(read(path, index=":")):
        if atoms.info.get("config_type") == "IsolatedAtom":
            continue
        where = f"{path}, configuration {k}"
        if energy_key not in atoms.info:
            raise ValueError(f"{where}: no energy '{energy_key}' (keys: {sorted(atoms.info)})")
        if forces_key not in atoms.arrays:
            raise ValueError(f"{where}: no per-atom forces '{forces_key}' (columns: {sorted(atoms.arrays)})")
        if grains == "atom":
            grain = np.arange(len(atoms))
        elif grains == "column":
            if grain_key not in atoms.arrays:
                raise ValueError(f"{where}: no grain column '{grain_key}' (columns: {sorted(atoms.arrays)})")
            _, grain = np.unique(atoms.arrays[grain_key], return_inverse=True)
        else:
            raise ValueError(f"grains must be 'column' or 'atom', not {grains!r}")
        periodic = bool(atoms.pbc.any())
        if periodic and not atoms.pbc.all():
            raise ValueError(f"{where}: partly periodic cells are not supported (pbc={atoms.pbc})")
        configs.append(Config(
            positions=torch.tensor(atoms.positions, dtype=torch.float64),
            numbers=torch.tensor(atoms.numbers, dtype=torch.long),
            grain=torch.tensor(grain, dtype=torch.long),
            n_grains=int(grain.max()) + 1,
            energy=float(atoms.info[energy_key]),
            forces=torch.tensor(atoms.arrays[forces_key], dtype=torch.float64),
            cell=torch.tensor(np.asarray(atoms.cell), dtype=torch.float64),
            periodic=periodic,
        ))
    return configs


def isolated_atom_energies(path: str, energy_key: str = "energy_xtb") -> Dict[int, float]:
    """E0 (eV) per atomic number from the file's ``config_type=IsolatedAtom`` entries."""
    return {int(a.numbers[0]): float(a.info[energy_key]) for a in read(path, index=":")
            if a.info.get("config_type") == "IsolatedAtom"}


def fit_atomic_energies(configs: Sequence[Config], elements: Sequence[int]) -> List[float]:
    """Least-squares E0 per element (eV) from total energies and compositions."""
    counts = np.array([[int((c.numbers == z).sum()) for z in elements] for c in configs], dtype=float)
    energies = np.array([c.energy for c in configs])
    return [float(e) for e in np.linalg.lstsq(counts, energies, rcond=None)[0]]


def attach_graphs(configs: Sequence[Config], grain_cutoff: float) -> None:
    """Precompute every configuration's graph (positions are fixed in a data set)."""
    for c in configs:
        c.graph = build_graph(c.positions, c.grain, c.n_grains, c.cell, c.periodic, grain_cutoff)


def collate(configs: Sequence[Config], elements: Sequence[int], dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """Concatenate configurations into one disconnected graph for the model."""
    index = {z: i for i, z in enumerate(elements)}
    parts: Dict[str, list] = {k: [] for k in (
        "positions", "species", "grain", "unwrap_shift", "intra_src", "intra_dst",
        "edge_src", "edge_dst", "edge_shift", "forces", "config")}
    atom_offset = grain_offset = 0
    for k, c in enumerate(configs):
        g = c.graph
        parts["positions"].append(c.positions)
        parts["species"].append(torch.tensor([index[int(z)] for z in c.numbers]))
        parts["grain"].append(c.grain + grain_offset)
        parts["unwrap_shift"].append(g["unwrap_shift"])
        parts["intra_src"].append(g["intra_src"] + atom_offset)
        parts["intra_dst"].append(g["intra_dst"] + atom_offset)
        parts["edge_src"].append(g["edge_src"] + grain_offset)
        parts["edge_dst"].append(g["edge_dst"] + grain_offset)
        parts["edge_shift"].append(g["edge_shift"])
        parts["forces"].append(c.forces)
        parts["config"].append(torch.full((c.n_grains,), k, dtype=torch.long))
        atom_offset += len(c.numbers)
        grain_offset += c.n_grains
    batch = {k: torch.cat(v) for k, v in parts.items()}
    for k in ("positions", "unwrap_shift", "edge_shift", "forces"):
        batch[k] = batch[k].to(dtype)
    batch["n_grains"] = grain_offset
    batch["energy"] = torch.tensor([c.energy for c in configs], dtype=dtype)
    batch["n_atoms"] = torch.tensor([len(c.numbers) for c in configs], dtype=dtype)
    return batch


def predict(model, batch: Dict[str, torch.Tensor], create_graph: bool = False):
    """Energies per configuration (eV) and forces (eV/Å) for a collated batch."""
    positions = batch["positions"].clone().requires_grad_(True)
    grain_energy = model(positions, batch["species"], batch["grain"], batch["n_grains"],
                         batch["unwrap_shift"], batch["intra_src"], batch["intra_dst"],
                         batch["edge_src"], batch["edge_dst"], batch["edge_shift"])
    energy = torch.zeros(len(batch["energy"]), dtype=grain_energy.dtype).index_add(
        0, batch["config"], grain_energy)
    forces, = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
    return energy, -forces
