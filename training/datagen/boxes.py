"""Periodic liquid boxes from MD frames, for quantum labelling.

A Monte Carlo barostat accepts a volume move by the energy change when every molecule's centre
is scaled with the box and the molecules stay rigid. A model that is right about forces in a
cluster can still be wrong about that energy change, and its liquid then drifts to the wrong
density. ``liquid_boxes`` writes periodic frames of a small liquid box with exactly such
moves applied (a random length scale per box), so labelling them (periodic GFN2-xTB,
:func:`training.datagen.label.label`) and training on them teaches the model the liquid's equation of
state at and around its density.
"""
from typing import List, Optional, Tuple

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


def liquid_boxes(topology_file: str, trajectory: Optional[str], n_boxes: int,
                 scale: Tuple[float, float] = (1.0, 1.0), seed: int = 0, skip: int = 0,
                 prefix: str = "box", min_edge: float = 0.0) -> List[Atoms]:
    """``n_boxes`` periodic frames of a liquid, each rigidly scaled by a random length factor.

    ``topology_file``: PDB (or any mdtraj topology) with bonds and a box; ``trajectory``: frames
    (DCD, ...), or None for the topology's own coordinates. Each box is a random frame (after
    ``skip``) whose molecule centres and box are scaled by a factor drawn uniformly from ``scale``
    (0.97-1.10 spans about 1.3x to 0.75x the frame's density). A box whose shortest edge would
    fall below ``min_edge`` Å (e.g. twice a model's cutoff) raises ``ValueError``. Returns
    ase.Atoms with ``pbc``, ``cell``, a ``molID`` column, ``label_id``, ``frame`` and ``scale``.
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
        xyz, box = scale_molecules(10.0 * frames.xyz[frame], molecule, 10.0 * frames.unitcell_vectors[frame],
                                   factor)
        edge = np.linalg.norm(box, axis=1).min()
        if edge < min_edge:
            raise ValueError(f"scale {factor:.3f} makes a box edge of {edge:.2f} Å, below --min-edge "
                             f"{min_edge:.2f} Å: raise the lower scale")
        atoms = Atoms(numbers=numbers, positions=xyz, cell=box, pbc=True)
        atoms.arrays["molID"] = molecule.copy()
        atoms.info.update(label_id=f"{prefix}-{index}", frame=frame + skip, scale=factor)
        boxes.append(atoms)
    return boxes
