"""Reference data: extended XYZ (read by ASE) -> tensors -> batched model inputs.

Files may use other units (``energy_unit``, ``length_unit``); everything is
converted on reading to Å, eV and eV/Å. Grains come from a per-atom integer
column (``molID`` for the carbonates), from the residues of a PDB topology,
from bond perception (covalent radii) or are single atoms. Isolated-atom
configurations (``config_type=IsolatedAtom``) give the per-element reference
energies E0.
"""
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from ase import units
from ase.io import read
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cgaa_openmm.graph import GrainGraph, batch_graphs, build_graph, grain_radii, intra_pairs
from cgaa_openmm.neighbors import check_box, neighbor_pairs

from . import labels

ENERGY_UNITS = {"eV": 1.0, "kcal/mol": units.kcal / units.mol, "kJ/mol": units.kJ / units.mol,
                "Hartree": units.Hartree}
LENGTH_UNITS = {"angstrom": 1.0, "nm": 10.0, "bohr": units.Bohr}


class DataError(ValueError):
    """A data file that cannot be used as it is (the message names file, configuration and key)."""


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
    graph: Optional[GrainGraph] = None
    stress: Optional[torch.Tensor] = None  # (3, 3) eV/Å^3, (1/V) dE/dstrain (ASE's sign); periodic only


def read_frames(path: str) -> list:
    """The configurations of an extended XYZ file as ``ase.Atoms``, with a clear error if unreadable.

    All of them, or those of an ASE index after ``@`` (``frames.xyz.xz@:50``, ``frames.xyz.xz@50:``)."""
    try:
        frames = read(path) if "@" in os.path.basename(path) else read(path, index=":")
        return frames if isinstance(frames, list) else [frames]
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except Exception as error:  # ASE raises many types (KeyError for an unknown element symbol, ...)
        raise DataError(f"{path}: cannot be read as extended XYZ ({type(error).__name__}: {error})") from error


def bonded_molecules(atoms, bond_scale: float = 1.5) -> np.ndarray:
    """Per-atom molecule index from bond perception: bonds join atoms closer than
    ``bond_scale`` x the sum of their covalent radii (minimum image in a periodic cell)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=bond_scale))
    n = len(atoms)
    return connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)[1]


def topology_grains(topology_file: str) -> tuple:
    """Atomic numbers and per-atom residue index of a PDB topology (one grain per residue)."""
    from openmm import app
    topology = app.PDBFile(topology_file).topology
    numbers = np.array([a.element.atomic_number if a.element else 0 for a in topology.atoms()])
    residue = np.array([a.residue.index for a in topology.atoms()])
    return numbers, residue


def read_configs(path: str, energy_key: Optional[str] = None, forces_key: Optional[str] = None,
                 grain_key: str = "molID", grains: str = "column", energy_unit: str = "eV",
                 length_unit: str = "angstrom", topology_file: Optional[str] = None,
                 bond_scale: float = 1.5, grain_span: Optional[float] = None,
                 stress_key: Optional[str] = None, quiet: bool = False) -> List[Config]:
    """Read an extended XYZ file into :class:`Config` objects in Å, eV and eV/Å.

    ``grains`` is ``"column"`` (per-atom ``grain_key``), ``"topology"`` (residues of
    ``topology_file``, atoms in the same order as every configuration), ``"bonds"``
    (bond-connected molecules) or ``"atom"``. With ``grain_span`` (Å), every grain's
    atoms must be linked by distances below it (the model's intra-grain cutoff), which
    catches a grain column that does not describe molecules. Isolated-atom
    configurations are skipped (see :func:`isolated_atom_energies`). A periodic
    configuration with a stress (energy_unit/length_unit^3, ASE's sign) gets it in eV/Å^3.

    Labels are found by :mod:`training.labels`: under the keys given, in ``info``/``arrays``
    or the results of the calculator ASE attached on reading; without keys, under the common
    names (``energy``, ``REF_energy``, ``energy_xtb``, ...). The place found in the first
    configuration is used for all, and printed on stderr with its units (unless ``quiet``).
    """
    e_unit, l_unit = ENERGY_UNITS[energy_unit], LENGTH_UNITS[length_unit]
    if grains == "topology":
        top_numbers, top_residue = topology_grains(topology_file)
    configs = []
    sources: Dict[str, labels.Source] = {}
    keys = dict(energy=energy_key, forces=forces_key, stress=stress_key)
    for k, atoms in enumerate(read_frames(path)):
        if atoms.info.get("config_type") == "IsolatedAtom":
            continue
        where = f"{path}, configuration {k}"
        for kind, what in (("energy", "energy"), ("forces", "per-atom forces")):
            sources.setdefault(kind, labels.find(atoms, kind, keys[kind]))
            if sources[kind] is None or not labels.present(atoms, sources[kind]):
                raise DataError(_missing(where, what, kind, keys[kind], sources[kind], atoms))
        if (atoms.numbers <= 0).any():
            raise DataError(f"{where}: unknown element symbol(s) at atoms {np.nonzero(atoms.numbers <= 0)[0][:5].tolist()}")
        positions = atoms.positions * l_unit
        forces = labels.value(atoms, sources["forces"]) * (e_unit / l_unit)
        if forces.shape != (len(atoms), 3) or not np.isfinite(forces).all():
            raise DataError(f"{where}: forces {sources['forces']} must be 3 finite numbers per atom")
        if grains == "atom":
            grain = np.arange(len(atoms))
        elif grains == "bonds":
            atoms_scaled = atoms.copy()
            atoms_scaled.positions = positions
            atoms_scaled.cell = np.asarray(atoms.cell) * l_unit
            grain = bonded_molecules(atoms_scaled, bond_scale)
        elif grains == "topology":
            if len(atoms) != len(top_numbers) or (atoms.numbers != top_numbers).any():
                raise DataError(f"{where}: atoms do not match {topology_file} "
                                f"({len(atoms)} vs {len(top_numbers)} atoms, or different elements in order)")
            grain = top_residue
        elif grains == "column":
            if grain_key not in atoms.arrays:
                raise DataError(f"{where}: no grain column '{grain_key}' (columns: {sorted(atoms.arrays)})")
            column = np.asarray(atoms.arrays[grain_key])
            if column.ndim != 1 or not np.issubdtype(column.dtype, np.integer):
                raise DataError(f"{where}: grain column '{grain_key}' must hold one integer per atom, "
                                f"not {column.dtype} of shape {column.shape}")
            grain = column
        else:
            raise DataError(f"grains must be 'column', 'topology', 'bonds' or 'atom', not {grains!r}")
        _, grain = np.unique(grain, return_inverse=True)
        periodic = bool(atoms.pbc.any())
        if periodic and not atoms.pbc.all():
            raise DataError(f"{where}: partly periodic cells are not supported (pbc={atoms.pbc})")
        if grain_span is not None and grains != "atom":
            check_grains_whole(atoms, positions, grain, grain_span, where, grains, grain_key)
        stress = None
        if periodic:
            if sources.get("stress") is None:
                sources["stress"] = labels.find(atoms, "stress", stress_key)
            if sources["stress"] is not None and labels.present(atoms, sources["stress"]):
                try:
                    stress = labels.stress_tensor(atoms, sources["stress"]) * (e_unit / l_unit ** 3)
                except ValueError as error:
                    raise DataError(f"{where}: {error}") from None
                if not np.isfinite(stress).all():
                    raise DataError(f"{where}: stress {sources['stress']} must be finite")
                stress = torch.tensor(stress, dtype=torch.float64)
        configs.append(Config(
            positions=torch.tensor(positions, dtype=torch.float64),
            numbers=torch.tensor(atoms.numbers, dtype=torch.long),
            grain=torch.tensor(grain, dtype=torch.long),
            n_grains=int(grain.max()) + 1,
            energy=float(labels.value(atoms, sources["energy"])) * e_unit,
            forces=torch.tensor(forces, dtype=torch.float64),
            cell=torch.tensor(np.asarray(atoms.cell) * l_unit, dtype=torch.float64),
            periodic=periodic,
            stress=stress,
        ))
    if not configs:
        raise DataError(f"{path}: no labelled configurations")
    if not quiet:
        stress = sources.get("stress")
        print(f"{path}: energy {sources['energy']} in {energy_unit}, forces {sources['forces']} in "
              f"{energy_unit}/{length_unit}, stress "
              + (f"{stress} in {energy_unit}/{length_unit}^3" if stress else "none"), file=sys.stderr)
    return configs


def _missing(where: str, what: str, kind: str, key: Optional[str], source: Optional["labels.Source"],
             atoms) -> str:
    """The message for a configuration without its ``kind`` label."""
    if key:
        return f"{where}: no {what} '{key}' ({labels.found(atoms)})"
    if source:
        return f"{where}: no {what} {source}, which earlier configurations have ({labels.found(atoms)})"
    tried = ", ".join(sorted({name for _, name in labels.AUTO[kind]}))
    return (f"{where}: no {what} found under the usual names ({tried}): it holds {labels.found(atoms)}. "
            f"Name the labels with {labels.FLAGS['energy']}, {labels.FLAGS['forces']} and {labels.FLAGS['stress']} "
            f"(energy_key, forces_key, stress_key in a training config)")


def check_grains_whole(atoms, positions, grain, span, where, grains, grain_key) -> None:
    """Raise :class:`DataError` if a grain's atoms are not linked by distances below ``span`` Å."""
    for g in range(int(grain.max()) + 1):
        members = np.nonzero(grain == g)[0]
        if len(members) < 2:
            continue
        sub = atoms[members]
        sub.positions = positions[members]
        d = sub.get_all_distances(mic=bool(atoms.pbc.all()))
        n_parts = connected_components(coo_matrix(d < span), directed=False)[0]
        if n_parts > 1:
            source = f"grain column '{grain_key}'" if grains == "column" else f"grains '{grains}'"
            raise DataError(f"{where}: {source} puts atoms {members[:8].tolist()}... in one grain, but they "
                            f"form {n_parts} groups more than {span} Å apart: not a molecule or residue")


def isolated_atom_energies(path: str, energy_key: Optional[str] = None, energy_unit: str = "eV") -> Dict[int, float]:
    """E0 (eV) per atomic number from the file's ``config_type=IsolatedAtom`` entries (their energy
    found as :func:`read_configs` finds it)."""
    energies = {}
    for k, atoms in enumerate(read_frames(path)):
        if atoms.info.get("config_type") == "IsolatedAtom":
            source = labels.find(atoms, "energy", energy_key)
            if source is None:
                raise DataError(_missing(f"{path}, configuration {k}", "energy", "energy", energy_key, None, atoms))
            energies[int(atoms.numbers[0])] = float(labels.value(atoms, source)) * ENERGY_UNITS[energy_unit]
    return energies


def fit_atomic_energies(configs: Sequence[Config], elements: Sequence[int]) -> List[float]:
    """Least-squares E0 per element (eV) from total energies and compositions."""
    counts = np.array([[int((c.numbers == z).sum()) for z in elements] for c in configs], dtype=float)
    energies = np.array([c.energy for c in configs])
    return [float(e) for e in np.linalg.lstsq(counts, energies, rcond=None)[0]]


def attach_graphs(configs: Sequence[Config], grain_cutoff: float, pair_cutoff: float = 0.0) -> None:
    """Precompute every configuration's graph (positions are fixed in a data set) with the
    builder the OpenMM force uses (:func:`cgaa_openmm.graph.build_graph`); ``pair_cutoff`` (Å)
    is the model's ``atom_pair_cutoff`` (pair term and contact wall). A periodic cell must be at
    least one cutoff wide (a single crystal cell may be narrower than the two cutoffs a simulation
    box needs)."""
    for k, c in enumerate(configs):
        if c.periodic:
            try:
                check_box(c.cell, max(grain_cutoff, pair_cutoff), multiple=1.0)
            except ValueError as error:
                raise DataError(f"periodic configuration {k} of {len(configs)}: {error}; use a supercell") from None
        src, dst = intra_pairs(c.grain, c.n_grains)
        c.graph = build_graph(c.positions, c.grain, c.n_grains, src, dst, c.cell, c.periodic, grain_cutoff,
                              pair_cutoff)


def largest_grain_radius(configs: Sequence[Config]) -> float:
    """The largest distance (Å) of an atom from its grain centre over ``configs`` (graphs attached)."""
    return max(float(grain_radii(c.positions + c.graph.unwrap_shift, c.grain, c.n_grains).max())
               for c in configs)


def contact_radii(configs: Sequence[Config], elements: Sequence[int], fraction: float,
                  search: float = 4.0) -> List[List[float]]:
    """``fraction`` of the closest distance (Å) between atoms of different grains, per element pair.

    Pairs never seen within ``search`` Å get 0 (no wall); see
    :class:`cgaa_openmm.pairs.ContactRepulsion`.
    """
    index = {z: k for k, z in enumerate(elements)}
    closest = torch.full((len(elements), len(elements)), float("inf"), dtype=torch.float64)
    for c in configs:
        i, j, shift = neighbor_pairs(c.positions.double(), c.cell.double(), c.periodic, search)
        keep = c.grain[i] != c.grain[j]
        i, j, shift = i[keep], j[keep], shift[keep]
        distance = torch.linalg.norm(c.positions.double()[j] + shift - c.positions.double()[i], dim=1)
        a = torch.tensor([index[int(z)] for z in c.numbers])[i]
        b = torch.tensor([index[int(z)] for z in c.numbers])[j]
        flat = closest.view(-1)
        flat.scatter_reduce_(0, a * len(elements) + b, distance, "amin")
    closest = torch.minimum(closest, closest.T)
    radii = torch.where(torch.isfinite(closest), fraction * closest, torch.zeros_like(closest))
    return [[round(float(r), 4) for r in row] for row in radii]


def collate(configs: Sequence[Config], elements: Sequence[int], dtype: torch.dtype) -> Dict[str, Any]:
    """Concatenate configurations into one disconnected graph for the model: ``graph`` (a
    :class:`~cgaa_openmm.graph.GrainGraph`), per-atom ``positions``, ``species``, ``grain``,
    ``forces`` and ``atom_config``, per-grain ``config``, and per-configuration labels."""
    index = {z: i for i, z in enumerate(elements)}
    graph = batch_graphs([c.graph for c in configs], [len(c.numbers) for c in configs])
    graph = graph._replace(unwrap_shift=graph.unwrap_shift.to(dtype), edge_shift=graph.edge_shift.to(dtype),
                           pair_shift=graph.pair_shift.to(dtype))
    grain_offsets = np.cumsum([0] + [c.n_grains for c in configs[:-1]])
    batch: Dict[str, Any] = dict(
        graph=graph,
        n_grains=graph.n_grains,
        positions=torch.cat([c.positions for c in configs]).to(dtype),
        species=torch.cat([torch.tensor([index[int(z)] for z in c.numbers]) for c in configs]),
        grain=torch.cat([c.grain + int(offset) for c, offset in zip(configs, grain_offsets)]),
        forces=torch.cat([c.forces for c in configs]).to(dtype),
        config=torch.cat([torch.full((c.n_grains,), k, dtype=torch.long) for k, c in enumerate(configs)]),
        atom_config=torch.cat([torch.full((len(c.numbers),), k, dtype=torch.long) for k, c in enumerate(configs)]))
    batch["energy"] = torch.tensor([c.energy for c in configs], dtype=torch.float64)  # as the model's energies
    batch["n_atoms"] = torch.tensor([len(c.numbers) for c in configs], dtype=dtype)
    batch["volume"] = torch.stack([torch.abs(torch.linalg.det(c.cell)) for c in configs]).to(dtype)
    batch["has_stress"] = torch.tensor([c.stress is not None for c in configs])
    batch["stress"] = torch.stack([torch.zeros(3, 3, dtype=torch.float64) if c.stress is None else c.stress
                                   for c in configs]).to(dtype)
    return batch


def predict(model, batch: Dict[str, torch.Tensor], create_graph: bool = False, stress: bool = False):
    """Energies per configuration (eV) and forces (eV/Å) for a collated batch; with ``stress``
    also the stress of each configuration, (1/V) dE/dstrain (eV/Å^3, ASE's sign; zero for
    configurations without a cell). The strain deforms positions and every periodic shift
    (integer combinations of the cell vectors) alike, as a deformation of the cell would."""
    positions = batch["positions"].clone().requires_grad_(True)
    inputs = [positions]
    graph = batch["graph"]
    r = positions
    if stress:
        strain = torch.zeros(len(batch["energy"]), 3, 3, dtype=positions.dtype, requires_grad=True)
        inputs.append(strain)
        symmetric = 0.5 * (strain + strain.transpose(1, 2))
        atom_config = batch["atom_config"]

        def deform(x, config):
            return x + torch.bmm(x.unsqueeze(1), symmetric[config]).squeeze(1)
        r = deform(positions, atom_config)
        graph = graph._replace(unwrap_shift=deform(graph.unwrap_shift, atom_config),
                               edge_shift=deform(graph.edge_shift, batch["config"][graph.edge_dst]),
                               pair_shift=deform(graph.pair_shift, atom_config[graph.pair_i]))
    grain_energy = model(r, batch["species"], batch["grain"], graph)
    energy = torch.zeros(len(batch["energy"]), dtype=grain_energy.dtype).index_add(
        0, batch["config"], grain_energy)
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
    volume = torch.where(batch["volume"] > 0, batch["volume"], torch.ones_like(batch["volume"]))
    # The long-range tail -c G^2/V of periodic configurations (CGAAModel.long_range_tail = c): a
    # function of the cell alone (no force), whose stress is +c G^2/V^2 on the diagonal. (A
    # DistributedDataParallel wrapper holds the model as .module.)
    c = getattr(model, "module", model).long_range_tail
    grains = torch.bincount(batch["config"], minlength=len(volume)).to(volume.dtype)
    tail = torch.where(batch["volume"] > 0, -c * grains ** 2 / volume, torch.zeros_like(volume))
    if not stress:
        return energy + tail, -grads[0]
    tail_stress = (-tail / volume).view(-1, 1, 1) * torch.eye(3, dtype=volume.dtype)
    return energy + tail, -grads[0], grads[1] / volume.view(-1, 1, 1) + tail_stress
