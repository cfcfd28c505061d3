"""Finite clusters cut from liquid frames, for quantum labelling.

A cluster is a centre (some atoms, e.g. one molecule) plus every *whole* molecule that
has an atom within a radius of it, unwrapped to the centre's periodic image. Clusters of
an ML model's own MD frames are the configurations it visits: labelled and added to the
training set, they teach it the regions (e.g. close contacts) its first data lacked.

``liquid_clusters`` samples such clusters from a trajectory of a molecular liquid and
writes them as extended XYZ with a per-atom ``molID`` column (the grains) and a
``label_id`` per cluster, ready for :func:`training.datagen.label.label`.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms


def minimum_image(delta: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """``delta`` (..., 3) Å wrapped to the nearest image in the cell whose rows are ``box`` (3, 3) Å."""
    if box is None:
        return delta
    fractional = delta @ np.linalg.inv(box)
    return (fractional - np.round(fractional)) @ box


def cut_cluster(positions: np.ndarray, molecule: np.ndarray, centre: Sequence[int], radius: float,
                box: Optional[np.ndarray] = None, max_molecules: Optional[int] = None
                ) -> Tuple[np.ndarray, np.ndarray]:
    """The centre atoms and every whole molecule with an atom within ``radius`` Å of one of them.

    ``positions`` (N, 3) Å; ``molecule`` (N,) molecule label per atom; ``box`` (3, 3) Å rows
    (minimum image) or None. Molecules are ordered nearest first (closest atom distance) and
    at most ``max_molecules`` are kept besides the centre's. Returns the atom indices and their
    positions: each molecule made whole, and placed at the periodic image of its closest contact
    with the centre (molecules must be smaller than half the box).
    """
    positions = np.asarray(positions, dtype=float)
    molecule = np.asarray(molecule)
    centre = np.asarray(centre, dtype=int)
    box = None if box is None else np.asarray(box, dtype=float)
    anchor = positions[centre[0]]
    core = anchor + minimum_image(positions[centre] - anchor, box)          # the centre, unwrapped
    delta = minimum_image(positions[:, None, :] - core[None, :, :], box)     # (N, n_centre)
    distance = np.linalg.norm(delta, axis=-1)
    centre_molecules = set(molecule[centre].tolist())
    nearest = {}
    for label in np.unique(molecule):
        if label not in centre_molecules:
            closest = distance[molecule == label].min()
            if closest < radius:
                nearest[label] = closest
    chosen = sorted(nearest, key=nearest.get)[:max_molecules]
    indices = np.concatenate([centre] + [np.flatnonzero(molecule == label) for label in chosen]).astype(int)
    result = [core]
    for label in chosen:
        atoms = np.flatnonzero(molecule == label)
        whole = positions[atoms[0]] + minimum_image(positions[atoms] - positions[atoms[0]], box)
        # The image that makes the closest contact with the centre.
        k, c = np.unravel_index(np.argmin(distance[atoms]), (len(atoms), len(centre)))
        result.append(whole + (core[c] + delta[atoms[k], c]) - whole[k])
    result = np.concatenate(result)
    return indices, result


def load_liquid(topology_file: str, trajectory: Optional[str] = None, skip: int = 0):
    """Frames of a liquid (mdtraj, nm) after ``skip``, and each atom's molecule label (N,) int.

    ``topology_file``: PDB (or any mdtraj topology) with bonds; ``trajectory``: frames (DCD, ...),
    or None for the topology's own coordinates. Molecules are the bonded groups of the topology.
    """
    import mdtraj
    frames = mdtraj.load(trajectory, top=topology_file) if trajectory else mdtraj.load(topology_file)
    frames = frames[skip:]
    molecule = np.empty(frames.n_atoms, dtype=int)
    for label, atoms in enumerate(frames.topology.find_molecules()):
        molecule[[atom.index for atom in atoms]] = label
    return frames, molecule


def liquid_clusters(topology_file: str, trajectory: Optional[str], n_clusters: int, radius: float,
                    max_molecules: int, seed: int = 0, scale: Tuple[float, float] = (1.0, 1.0),
                    skip: int = 0, prefix: str = "cluster") -> List[Atoms]:
    """``n_clusters`` clusters around random molecules of random frames of a liquid.

    ``topology_file``: PDB (or any mdtraj topology) with bonds; ``trajectory``: frames (DCD, ...),
    or None for the topology's own coordinates. Each cluster is a random centre molecule plus up
    to ``max_molecules`` molecules within ``radius`` Å. Each neighbour's centre of mass is then
    moved towards the centre molecule's by a factor drawn uniformly from ``scale`` (rigid
    molecules; (0.85, 1.0) probes compressed contacts; (1, 1) leaves the frame as it is).
    ``skip`` frames at the start are not used. Returns ase.Atoms with ``molID`` and ``label_id``.
    """
    frames, molecule = load_liquid(topology_file, trajectory, skip)
    n_molecules = int(molecule.max()) + 1
    numbers = np.array([atom.element.atomic_number for atom in frames.topology.atoms])
    masses = np.array([atom.element.mass for atom in frames.topology.atoms])
    rng = np.random.default_rng(seed)
    clusters = []
    for index in range(n_clusters):
        frame = int(rng.integers(frames.n_frames))
        centre_molecule = int(rng.integers(n_molecules))
        box = None if frames.unitcell_vectors is None else 10.0 * frames.unitcell_vectors[frame]
        centre = np.flatnonzero(molecule == centre_molecule)
        atoms, xyz = cut_cluster(10.0 * frames.xyz[frame], molecule, centre, radius, box, max_molecules)
        labels = molecule[atoms]
        centre_com = np.average(xyz[labels == centre_molecule], axis=0, weights=masses[atoms][labels == centre_molecule])
        for label in np.unique(labels):
            if label != centre_molecule:
                rows = labels == label
                com = np.average(xyz[rows], axis=0, weights=masses[atoms][rows])
                xyz[rows] += (rng.uniform(*scale) - 1.0) * (com - centre_com)
        _, grain = np.unique(labels, return_inverse=True)
        cluster = Atoms(numbers=numbers[atoms], positions=xyz)
        cluster.arrays["molID"] = grain.astype(int)
        cluster.info.update(label_id=f"{prefix}-{index}", frame=frame + skip, n_molecules=int(grain.max()) + 1)
        clusters.append(cluster)
    return clusters
