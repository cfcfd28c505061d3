"""benchmarks/xtb_reference.py on a tiny case: cluster cuts and tblite's stress against rigid scaling."""
import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import xtb_reference


@pytest.fixture(scope="module")
def box():
    """A held-out 200-atom box (1.125 g/mL) with its molecules made whole."""
    atoms = next(a for a in read(xtb_reference.DATA, index=":") if a.info["label_id"] == "npt5-28")
    return atoms, xtb_reference.whole_molecules(atoms)


def test_cluster_cut_gives_whole_molecules(box):
    atoms, positions = box
    molecule, cell = atoms.arrays["molID"], np.asarray(atoms.cell)
    cluster, copies, owner, parents, distance = xtb_reference.cut_cluster(
        positions, cell, molecule, positions[0], 25)   # more molecules than the box holds
    free = Atoms(numbers=atoms.numbers[copies], positions=cluster)
    i, j = neighbor_list("ij", free, natural_cutoffs(free, mult=1.2))
    n, bonded = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(free),) * 2))
    assert n == 25 == len(np.unique(owner))
    # the bonded fragments are exactly the cut's molecules, each a translated copy of a whole box molecule
    assert all(len(np.unique(bonded[owner == k])) == 1 for k in range(25))
    for k, parent in enumerate(parents):
        original = positions[molecule == np.unique(molecule)[parent]]
        shift = cluster[owner == k] - original
        assert np.allclose(shift, shift[0], atol=1e-9)
        assert np.allclose(np.linalg.solve(cell.T, shift[0]), np.round(np.linalg.solve(cell.T, shift[0])), atol=1e-9)
    assert np.all(np.diff(distance) >= 0)
    assert min(np.linalg.norm(cluster[:, None] - cluster[None], axis=2)[~np.eye(len(cluster), dtype=bool)]) > 0.8


def test_stress_matches_rigid_scaling(box):
    """Four molecules of the box in a 10 Å cubic cell: tblite's molecular virial pressure against -dE/dV
    of rigid molecular scaling, and the atomic one against uniform scaling (1 +- 0.001). Measured:
    -0.528 against -0.529 kbar and -3.981 against -3.979 kbar; at 1 +- 0.005 the central difference
    itself is off by 0.007 and 0.06 kbar."""
    atoms, positions = box
    molecule = atoms.arrays["molID"]
    centre = xtb_reference.centres(positions, molecule)[0]
    small, copies, owner, _, _ = xtb_reference.cut_cluster(positions, np.asarray(atoms.cell), molecule, centre, 4)
    numbers, cell = atoms.numbers[copies], np.eye(3) * 10.0
    options = xtb_reference.settings()
    result = xtb_reference.single_point(numbers, small, cell, options)
    atomic, molecular = xtb_reference.virial_pressures(small, owner, result["forces"], result["stress"], 1000.0)
    rigid = xtb_reference.scaling_pressure(numbers, small, cell, owner, 0.001, options)["pressure_kbar"]
    uniform = xtb_reference.scaling_pressure(numbers, small, cell, owner, 0.001, options, rigid=False)["pressure_kbar"]
    assert abs(rigid - molecular) < 0.02
    assert abs(uniform - atomic) < 0.02
    assert abs(molecular - atomic) > 1.0   # the intramolecular virial matters: the check can tell them apart
