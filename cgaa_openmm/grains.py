"""Grains from an OpenMM, mdtraj or ParmEd topology.

A grain is a group of atoms that becomes one node of the model's graph:
``"residue"`` (one per topology residue, the default), ``"molecule"``
(bond-connected components), ``"atom"`` (every atom alone: the all-atom
baseline) or an explicit list of atom-index groups.
"""
from collections import Counter
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
from openmm import app


GrainSpec = Union[str, Sequence[Sequence[int]]]


def hill_formula(numbers: Sequence[int]) -> str:
    """Hill-order chemical formula of a group of atomic numbers, e.g. ``C3H4O3``."""
    counts = Counter(app.Element.getByAtomicNumber(int(z)).symbol for z in numbers)
    first = [s for s in ("C", "H") if s in counts] if "C" in counts else []
    order = first + sorted(s for s in counts if s not in first)
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)


def as_openmm_topology(topology) -> app.Topology:
    """Accept an ``openmm.app.Topology``, ``mdtraj.Topology`` or ``parmed.Structure``.

    An ``mdtraj.Topology`` carries no box vectors (mdtraj keeps them on the
    trajectory), so the result is non-periodic unless the caller sets a box.
    """
    if isinstance(topology, app.Topology):
        return topology
    if hasattr(topology, "to_openmm"):           # mdtraj.Topology
        return topology.to_openmm()
    if hasattr(topology, "topology") and isinstance(topology.topology, app.Topology):  # parmed.Structure
        return topology.topology
    raise TypeError(f"expected an openmm.app.Topology, mdtraj.Topology or parmed.Structure, "
                    f"not {type(topology).__name__}")


def grain_groups(topology: app.Topology, grains: GrainSpec = "residue") -> List[List[int]]:
    """Atom indices of every grain; each atom belongs to exactly one grain."""
    n_atoms = topology.getNumAtoms()
    if isinstance(grains, str):
        if grains == "residue":
            groups = [[a.index for a in res.atoms()] for res in topology.residues()]
        elif grains == "molecule":
            import mdtraj
            groups = [sorted(a.index for a in mol)
                      for mol in mdtraj.Topology.from_openmm(topology).find_molecules()]
        elif grains == "atom":
            groups = [[i] for i in range(n_atoms)]
        else:
            raise ValueError(f"grains must be 'residue', 'molecule', 'atom' or a list of atom-index "
                             f"groups, not {grains!r}")
    else:
        groups = [[int(i) for i in g] for g in grains]
    groups = [g for g in groups if g]
    seen = np.zeros(n_atoms, dtype=int)
    for g in groups:
        if min(g) < 0 or max(g) >= n_atoms:
            raise ValueError(f"grain {g} names atoms outside the topology's {n_atoms} atoms")
        np.add.at(seen, g, 1)
    if (seen != 1).any():
        bad = np.nonzero(seen != 1)[0][:10].tolist()
        raise ValueError(f"every atom must be in exactly one grain; atoms {bad} are in "
                         f"{seen[bad].tolist()} grains")
    return groups


def atom_selection(topology: app.Topology, atoms: Optional[Iterable[int]]) -> List[int]:
    """Sorted distinct topology indices of ``atoms``, or of every atom when ``atoms`` is None."""
    n_atoms = topology.getNumAtoms()
    if atoms is None:
        return list(range(n_atoms))
    selected = sorted({int(i) for i in atoms})
    if not selected:
        raise ValueError("atoms selects no atom")
    if selected[0] < 0 or selected[-1] >= n_atoms:
        raise ValueError(f"atoms must be indices of the topology's {n_atoms} atoms, not {selected[0]}..{selected[-1]}")
    return selected


def selected_grain_groups(topology: app.Topology, grains: GrainSpec, selected: List[int]) -> List[List[int]]:
    """The grains (topology indices) made of the ``selected`` atoms; a grain only partly selected raises."""
    n_atoms = topology.getNumAtoms()
    if not isinstance(grains, str) and len(selected) < n_atoms:
        covered = {int(i) for group in grains for i in group}
        missing = sorted(set(selected) - covered)
        if missing:
            raise ValueError(f"atoms {missing[:10]} are selected but in none of the given grains")
        grains = [list(group) for group in grains] + [[i] for i in range(n_atoms) if i not in covered]
    inside = np.zeros(n_atoms, dtype=bool)
    inside[selected] = True
    atom_list = list(topology.atoms())
    groups = []
    for group in grain_groups(topology, grains):
        if inside[group].all():
            groups.append(group)
        elif inside[group].any():
            residues = ", ".join(dict.fromkeys(f"{atom_list[i].residue.name} {atom_list[i].residue.id}"
                                               for i in group))
            raise ValueError(
                f"residue {residues} is only partly selected: atoms {[i for i in group if inside[i]][:10]} are in "
                f"the ML region but {[i for i in group if not inside[i]][:10]} are not. Every grain "
                f"({grains if isinstance(grains, str) else 'as given'}) must be wholly ML or wholly MM.")
    return groups


def grain_index(groups: Sequence[Sequence[int]], n_atoms: int) -> np.ndarray:
    """Per-atom grain index (0..G-1) from grain groups."""
    index = np.empty(n_atoms, dtype=np.int64)
    for g, atoms in enumerate(groups):
        index[list(atoms)] = g
    return index


def topology_from_atoms(atoms, grain_key: str = "molID", residue_names=None) -> app.Topology:
    """An OpenMM topology for an ``ase.Atoms``: one residue per value of the per-atom ``grain_key``.

    Residues are named by ``residue_names[formula]`` when given, else by their
    Hill formula; the box is set when the atoms are periodic.
    """
    from openmm import Vec3, unit
    topology = app.Topology()
    chain = topology.addChain()
    labels = atoms.arrays[grain_key] if grain_key in atoms.arrays else np.arange(len(atoms))
    residues = {}
    for i, (z, label) in enumerate(zip(atoms.numbers, labels)):
        if label not in residues:
            members = atoms.numbers[labels == label]
            formula = hill_formula(members)
            residues[label] = topology.addResidue((residue_names or {}).get(formula, formula), chain)
        element = app.Element.getByAtomicNumber(int(z))
        topology.addAtom(f"{element.symbol}{i}", element, residues[label])
    if atoms.pbc.all():
        topology.setPeriodicBoxVectors([Vec3(*v) for v in np.asarray(atoms.cell)] * unit.angstrom)
    return topology


def grain_name(atoms: Sequence[app.topology.Atom], group: Sequence[int]) -> str:
    """How error messages name a grain: its atoms' residue(s), e.g. ``residue EMC 17 (atoms 232-246)``."""
    residues = list(dict.fromkeys(f"{atoms[i].residue.name} {atoms[i].residue.id}" for i in group))
    where = f"residue {residues[0]}" if len(residues) == 1 else f"residues {', '.join(residues[:3])}" + (
        ", ..." if len(residues) > 3 else "")
    return f"{where} (atoms {min(group)}-{max(group)})"
