"""The contact wall: zero on the data, steep where molecules overlap, exact forces, periodic images."""
import numpy as np
import pytest
import torch
from ase.io import read

from cgaa_openmm import CGAAPotential
from cgaa_openmm.grains import topology_from_atoms

from conftest import data_file, energy_forces, make_model, make_module

WIDE = [[2.2, 2.4, 2.3], [2.4, 2.9, 2.7], [2.3, 2.7, 2.6]]   # Å: radii that touch real contacts


def pushed_together(atoms, gap):
    """The cluster with its second molecule moved so that its closest atom is ``gap`` Å from the first's."""
    atoms = atoms.copy()
    mol = atoms.arrays["molID"]
    first, second = mol == np.unique(mol)[0], mol == np.unique(mol)[1]
    a, b = atoms.positions[first], atoms.positions[second]
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    i, j = np.unravel_index(d.argmin(), d.shape)
    direction = (b[j] - a[i]) / d[i, j]
    atoms.positions[second] += (gap - d[i, j]) * direction
    return atoms


def test_shipped_model_wall_is_zero_on_every_test_configuration():
    potential = CGAAPotential.load("carbonates-xtb")
    contact = potential.model.contact
    assert contact.cutoff > 1.0, "the shipped model should carry contact radii"
    elements = potential.model.elements
    for atoms in read(data_file("solvent_xtb_test.xyz"), index=":"):
        if "molID" not in atoms.arrays:
            continue
        _, grain = np.unique(atoms.arrays["molID"], return_inverse=True)
        species = torch.tensor([elements.index(int(z)) for z in atoms.numbers])
        energy = contact(torch.tensor(atoms.positions, dtype=torch.float32), species, torch.tensor(grain),
                         torch.zeros(3, 3), False)
        assert energy.item() == 0.0


def test_wall_pushes_overlapping_molecules_apart(clusters):
    potential = CGAAPotential.load("carbonates-xtb")
    potential.model.double()
    energies = []
    for gap in (0.8, 0.6, 0.4):   # Å; the radii are 0.7 x the closest contacts in the data (0.6-1.3 Å)
        atoms = pushed_together(clusters[1], gap)
        module = potential.createModule(topology_from_atoms(atoms))
        pos = torch.tensor(atoms.positions / 10.0, requires_grad=True)   # nm
        energy = module(pos)
        wall = potential.model.contact(pos.detach() * 10.0, module.species, module.grain, torch.zeros(3, 3), False)
        energies.append((energy.item(), wall.item()))
    walls = [w for _, w in energies]
    assert walls[0] < walls[1] < walls[2] and walls[2] > 5.0, walls   # eV, steeply rising
    assert energies[2][0] > energies[0][0], "overlap must cost energy overall"


@pytest.mark.parametrize("cell", [None, np.diag([11.0, 11.5, 12.0])], ids=["open", "periodic"])
def test_wall_forces_are_minus_energy_gradient(clusters, cell):
    atoms = pushed_together(clusters[1], 1.3)
    model = make_model(contact_radii=WIDE)
    module = make_module(atoms, model, periodic=cell is not None)
    _, forces = energy_forces(module, atoms.positions, cell)
    assert model.contact(torch.tensor(atoms.positions), module.species, module.grain,
                         torch.zeros(3, 3, dtype=torch.float64), False).item() > 0.1
    h = 1e-5
    d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=2)
    np.fill_diagonal(d, 9.0)
    closest = int(np.unravel_index(d.argmin(), d.shape)[0])
    for axis in range(3):
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[closest, axis] += h
        minus[closest, axis] -= h
        numeric = -(energy_forces(module, plus, cell)[0] - energy_forces(module, minus, cell)[0]) / (2 * h)
        assert forces[closest, axis] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_wall_across_the_periodic_boundary(clusters):
    atoms = pushed_together(clusters[1], 1.3)
    cell = np.diag([14.0, 14.0, 14.0])
    model = make_model(contact_radii=WIDE)
    module = make_module(atoms, model, periodic=True)
    e0, f0 = energy_forces(module, atoms.positions, cell)
    # Wrap every atom into the box: molecules and close contacts now straddle faces.
    shifted = atoms.positions - atoms.positions.mean(0)
    wrapped = shifted - np.floor(shifted / 14.0) * 14.0
    e1, f1 = energy_forces(module, wrapped, cell)
    assert e1 == pytest.approx(e0, rel=1e-10)
    np.testing.assert_allclose(f1, f0, atol=1e-8)
