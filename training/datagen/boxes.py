"""Periodic liquid boxes from MD frames, for quantum labelling.

A Monte Carlo barostat accepts a volume move by the energy change when every molecule's centre
is scaled with the box and the molecules stay rigid. A model that is right about forces in a
cluster can still be wrong about that energy change, and its liquid then drifts to the wrong
density. ``liquid_boxes`` writes periodic frames of a small liquid box with exactly such
moves applied (a random length scale per box), so labelling them (periodic GFN2-xTB,
:func:`training.datagen.label.label`) and training on them teaches the model the liquid's equation of
state at and around its density.

A molecular crystal is simulated as a supercell (at least twice the model's cutoff across), but
labelled as its unit cell: with ``subcells`` each box is the molecules whose centres lie in one
randomly chosen cell of the supercell, in that cell's box. Its periodic images are copies of
those molecules rather than of their thermally displaced neighbours, a difference of two thermal
displacements at the cell's faces; the labels are exact for the box as written.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from training.datagen.clusters import load_liquid, minimum_image


def scale_molecules(positions: np.ndarray, molecule: np.ndarray, box: np.ndarray, factor: float
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Molecules made whole and their geometric centres (and the box) scaled by ``factor``.

    ``positions`` (N, 3) Å, ``molecule`` (N,) molecule label per atom, ``box`` (3, 3) Å rows.
    This is the move of OpenMM's ``MonteCarloBarostat``: each molecule keeps its shape and its
    centre moves with the box. Returns the new positions (N, 3) Å and box (3, 3) Å.
    """
    positions = np.array(positions, dtype=float)
    for label in np.unique(molecule):
        rows = np.flatnonzero(molecule == label)
        whole = positions[rows[0]] + minimum_image(positions[rows] - positions[rows[0]], box)
        centre = whole.mean(axis=0)
        positions[rows] = whole + (factor - 1.0) * centre
    return positions, factor * np.asarray(box, dtype=float)


def subcell(positions: np.ndarray, molecule: np.ndarray, box: np.ndarray, repeats: Sequence[int],
            rng: np.random.Generator, tolerance: float = 1.5) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cell of a crystal supercell: the molecules whose centres lie in a random one of the
    ``repeats`` (A, B, C) cells of ``box`` (3, 3) Å rows, made whole.

    The supercell must still be a crystal of that cell: every molecule's centre within
    ``tolerance`` Å of a lattice image of one of the chosen cell's centres, and every cell holding
    the same number of molecules; otherwise ``ValueError`` (a melt, a crystal moved off its
    lattice, or ``repeats`` that do not describe the supercell).
    Returns the atom indices taken (sorted), their positions (Å) and the cell's box (3, 3) Å.
    """
    repeats = np.asarray(repeats, dtype=int)
    described = " x ".join(map(str, repeats))
    whole, _ = scale_molecules(positions, molecule, box, 1.0)
    labels = np.unique(molecule)
    if len(labels) % repeats.prod():
        raise ValueError(f"{len(labels)} molecules cannot fill {described} equal cells")
    per_cell = len(labels) // repeats.prod()
    centres = np.array([whole[molecule == label].mean(axis=0) for label in labels])
    fractional = centres @ np.linalg.inv(box)
    cell_of = np.floor((fractional - np.floor(fractional)) * repeats).astype(int)
    flat = np.ravel_multi_index(cell_of.T, repeats)
    counts = np.bincount(flat, minlength=repeats.prod())
    chosen = int(rng.choice(np.flatnonzero(counts == per_cell))) if (counts == per_cell).any() else None
    small = box / repeats[:, None]
    if chosen is not None:
        own = centres[flat == chosen]
        offset = minimum_image(centres[:, None, :] - own[None, :, :], small)
        off_lattice = float(np.linalg.norm(offset, axis=2).min(axis=1).max())
    if chosen is None or off_lattice > tolerance:
        found = f"cells holding {sorted(set(counts.tolist()))} molecules" if chosen is None else \
            f"a molecule {off_lattice:.1f} Å from every lattice site of a cell"
        raise ValueError(f"the trajectory is not a {described} supercell of a crystal ({found}; {per_cell} "
                         f"molecules per cell within {tolerance} Å of their sites expected): the crystal has melted "
                         "or moved off its lattice, or --subcells does not describe the supercell")
    rows = np.flatnonzero(np.isin(molecule, labels[flat == chosen]))
    corner = np.array(np.unravel_index(chosen, repeats)) / repeats
    # each molecule moved by whole supercell vectors into the chosen cell, that cell to the origin
    shift = -(np.floor(fractional[np.searchsorted(labels, molecule[rows])]) + corner)
    return rows, whole[rows] + shift @ box, small


def liquid_boxes(topology_file: str, trajectory: Optional[str], n_boxes: int,
                 scale: Tuple[float, float] = (1.0, 1.0), seed: int = 0, skip: int = 0,
                 prefix: str = "box", min_edge: float = 0.0,
                 subcells: Optional[Sequence[int]] = None) -> List[Atoms]:
    """``n_boxes`` periodic frames of a liquid, each rigidly scaled by a random length factor.

    ``topology_file``: PDB (or any mdtraj topology) with bonds and a box; ``trajectory``: frames
    (DCD, ...), or None for the topology's own coordinates. Each box is a random frame (after
    ``skip``) whose molecule centres and box are scaled by a factor drawn uniformly from ``scale``
    (0.97-1.10 spans about 1.3x to 0.75x the frame's density). A box whose shortest edge would
    fall below ``min_edge`` Å (e.g. twice a model's cutoff) raises ``ValueError``. With
    ``subcells`` (A, B, C), each box is one cell of the supercell (:func:`subcell`) before the
    scaling. Returns ase.Atoms with ``pbc``, ``cell``, a ``molID`` column, ``label_id``, ``frame``
    and ``scale``.
    """
    frames, molecule = load_liquid(topology_file, trajectory, skip)
    if frames.unitcell_vectors is None:
        raise ValueError(f"{topology_file}: no periodic box")
    numbers = np.array([atom.element.atomic_number for atom in frames.topology.atoms])
    rng = np.random.default_rng(seed)
    boxes = []
    for index in range(n_boxes):
        frame = int(rng.integers(frames.n_frames))
        factor = float(rng.uniform(*scale))
        xyz, box, rows = 10.0 * frames.xyz[frame], 10.0 * frames.unitcell_vectors[frame], slice(None)
        if subcells is not None:
            rows, xyz, box = subcell(xyz, molecule, box, subcells, rng)
        xyz, box = scale_molecules(xyz, molecule[rows], box, factor)
        edge = np.linalg.norm(box, axis=1).min()
        if edge < min_edge:
            raise ValueError(f"scale {factor:.3f} makes a box edge of {edge:.2f} Å, below --min-edge "
                             f"{min_edge:.2f} Å: raise the lower scale")
        atoms = Atoms(numbers=numbers[rows], positions=xyz, cell=box, pbc=True)
        atoms.arrays["molID"] = np.unique(molecule[rows], return_inverse=True)[1]
        atoms.info.update(label_id=f"{prefix}-{index}", frame=frame + skip, scale=factor)
        boxes.append(atoms)
    return boxes
