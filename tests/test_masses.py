"""Hydrogen mass repartitioning: ``createSystem(hydrogenMass=...)`` and ``simulate --hydrogen-mass``."""
import json
import os

import numpy as np
import openmm
import pytest
from openmm import app, unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.cli import main
from cgaa_openmm.grains import grain_groups
from cgaa_openmm.masses import hydrogen_partners, repartition_hydrogen_mass

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EXAMPLE = os.path.join(ROOT, "example_systems", "ecemc.pdb")


@pytest.fixture(scope="module")
def example():
    return app.PDBFile(EXAMPLE)


def element_masses(topology):
    return np.array([atom.element.mass.value_in_unit(unit.dalton) for atom in topology.atoms()])


def system_masses(system):
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def without_bonds(topology):
    """A copy of ``topology`` with the same residues and box but no bonds (a PDB without CONECT)."""
    copy = app.Topology()
    chain = copy.addChain()
    for residue in topology.residues():
        new = copy.addResidue(residue.name, chain, residue.id)
        for atom in residue.atoms():
            copy.addAtom(atom.name, atom.element, new)
    copy.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    return copy


def repartitioned(topology, partners, mass):
    system = openmm.System()
    for m in element_masses(topology):
        system.addParticle(m)
    repartition_hydrogen_mass(system, partners, mass)
    return system_masses(system)


def test_createSystem_moves_mass_from_each_bonded_heavy_atom_to_its_hydrogens(example):
    system = CGAAPotential.load("carbonates-xtb-fast").createSystem(example.topology, precision="single",
                                                                    hydrogenMass=3 * unit.dalton)
    before, after = element_masses(example.topology), system_masses(system)
    assert after.sum() == pytest.approx(before.sum(), abs=1e-9)
    hydrogen = np.array([atom.element.symbol == "H" for atom in example.topology.atoms()])
    np.testing.assert_allclose(after[hydrogen], 3.0)
    expected = before.copy()
    expected[hydrogen] = 3.0
    for a, b in example.topology.bonds():           # each heavy atom gives what its own hydrogens gained
        for h, heavy in ((a, b), (b, a)):
            if hydrogen[h.index] and not hydrogen[heavy.index]:
                expected[heavy.index] -= 3.0 - before[h.index]
    np.testing.assert_allclose(after, expected, atol=1e-9)
    assert (after[~hydrogen] > 5.0).all()           # CH3 carbons keep 12.011 - 3 * 1.992


def test_a_topology_without_bonds_takes_the_nearest_heavy_atom_of_the_grain(example):
    bare = without_bonds(example.topology)
    from_bonds = repartitioned(example.topology, hydrogen_partners(example.topology, grain_groups(
        example.topology)), 3.0)
    by_distance = hydrogen_partners(bare, grain_groups(bare), example.positions)
    np.testing.assert_allclose(repartitioned(bare, by_distance, 3.0), from_bonds, atol=1e-12)
    with pytest.raises(ValueError, match=r"hydrogens have no bond in the topology .*atom 5 \(H1\).*pass positions"):
        hydrogen_partners(bare, grain_groups(bare))


def test_a_hydrogen_with_no_heavy_atom_in_reach_raises(example):
    bare = without_bonds(example.topology)
    xyz = np.array(example.positions.value_in_unit(unit.nanometer))
    xyz[5] += [0.2, 0.0, 0.0]                         # atom 5, an H of the first EC, 2 Å off its carbon
    with pytest.raises(ValueError, match=r"hydrogen atom 5 \(H1\) of residue EC 1 .* no heavy atom of its grain "
                                         r"within 1.3 Å"):
        hydrogen_partners(bare, grain_groups(bare), xyz)


def test_a_hydrogen_mass_that_empties_the_heavy_atom_raises(example):
    partners = hydrogen_partners(example.topology, grain_groups(example.topology))
    with pytest.raises(ValueError, match="would be left with .* Da"):
        repartitioned(example.topology, partners, 5.5)   # a CH3 carbon would give 3 x 4.49 Da of its 12.01
    with pytest.raises(ValueError, match="positive"):
        repartitioned(example.topology, partners, 0.0)


def test_simulate_hydrogen_mass_is_a_run_setting(tmp_path):
    out = str(tmp_path / "md")
    quick = ["--model", "carbonates-xtb-fast", "--minimize", "0", "--threads", "1", "--output", out]
    main(["simulate", "--steps", "0", "--hydrogen-mass", "3", "--timestep", "2"] + quick)
    with open(os.path.join(out, "settings.json")) as file:
        assert json.load(file)["hydrogen_mass"] == 3.0
    with pytest.raises(SystemExit, match=r"hydrogen_mass 3.0 -> 2.5"):
        main(["simulate", "--steps", "2", "--hydrogen-mass", "2.5", "--timestep", "2"] + quick)
    with pytest.raises(SystemExit, match=r"hydrogen_mass 3.0 -> None"):
        main(["simulate", "--steps", "2", "--timestep", "2"] + quick)
