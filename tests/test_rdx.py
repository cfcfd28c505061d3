"""The α-RDX cell built from its published asymmetric unit (example_systems/build_rdx.py)."""
import os

import numpy as np
import pytest
from openmm import app, unit

from build_rdx import CELL, main  # example_systems/ is on pytest's pythonpath (setup.cfg)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_cell_has_eight_whole_molecules_at_the_papers_density(tmp_path):
    result = main(["--repeats", "1", "1", "1", "--repeats", "2", "1", "1", "--output-dir", str(tmp_path)])
    assert result["molecules"] == 8 and result["atoms"] == 168
    assert abs(result["density_g_per_cm3"] - 1.806) < 0.002
    assert sorted(result["bond_lengths_A"]) == ["C-H", "C-N", "N-N", "N-O"]
    assert all(1.0 < d < 1.12 for d in result["bond_lengths_A"]["C-H"])      # neutron C-H lengths
    assert all(1.18 < d < 1.25 for d in result["bond_lengths_A"]["N-O"])
    cell = app.PDBFile(str(tmp_path / "rdx.pdb"))
    assert [r.name for r in cell.topology.residues()] == ["RDX"] * 8
    assert cell.topology.getNumBonds() == 8 * 21
    np.testing.assert_allclose(np.diag(cell.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)), CELL)
    double = app.PDBFile(str(tmp_path / "rdx-2x1x1.pdb"))
    assert double.topology.getNumAtoms() == 336
    np.testing.assert_allclose(double.topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.angstrom),
                               2 * CELL[0])
    committed = app.PDBFile(os.path.join(ROOT, "example_systems", "rdx.pdb"))       # the committed file is this
    np.testing.assert_allclose(committed.positions.value_in_unit(unit.angstrom),
                               cell.positions.value_in_unit(unit.angstrom), atol=1e-3)


def test_the_pbca_relaxation_gradient_is_the_finite_difference_of_its_energy():
    """relax_rdx's variables (3 lengths, 21 x 3 fractions) make eight whole Pbca molecules, and the
    gradient it builds from forces and stress (chain rule over the eight images; V σ / L per length)
    is the central difference of the energy: with a smooth Lennard-Jones stand-in for GFN2-xTB."""
    from ase.calculators.lj import LennardJones

    from build_rdx import read_asymmetric_unit
    from relax_rdx import PbcaCell
    _, elements, fractional = read_asymmetric_unit()
    cell = PbcaCell(elements, fractional)
    lengths = np.array(CELL) * np.array([1.01, 0.99, 1.02])
    rng = np.random.default_rng(1)
    asymmetric = fractional + rng.normal(0, 0.002, fractional.shape)
    atoms = cell.atoms(lengths, asymmetric)
    molecules = atoms.positions.reshape(8, 21, 3)
    first_bonds = np.linalg.norm(molecules[0][:, None] - molecules[0][None], axis=2)
    for molecule in molecules:                       # whole images of the asymmetric unit
        np.testing.assert_allclose(np.linalg.norm(molecule[:, None] - molecule[None], axis=2), first_bonds, atol=1e-9)
    calculator = LennardJones(sigma=2.8, epsilon=0.005, rc=6.0, smooth=True)

    def energy(lengths, asymmetric):
        atoms = cell.atoms(lengths, asymmetric)
        atoms.calc = calculator
        return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)

    _, forces, stress = energy(lengths, asymmetric)
    d_lengths, d_asymmetric = cell.gradient(lengths, forces, stress)
    h = 1e-5
    for axis in range(3):
        step = np.eye(3)[axis] * h
        numeric = (energy(lengths + step, asymmetric)[0] - energy(lengths - step, asymmetric)[0]) / (2 * h)
        assert d_lengths[axis] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    assert np.abs(d_lengths).max() > 1e-3
    for atom, axis in [(0, 0), (5, 1), (20, 2)]:
        step = np.zeros_like(asymmetric)
        step[atom, axis] = h / lengths[axis]
        numeric = (energy(lengths, asymmetric + step)[0] - energy(lengths, asymmetric - step)[0]) / (2 * h / lengths[axis])
        assert d_asymmetric[atom, axis] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_the_relaxation_script_lowers_the_energy_and_resumes(tmp_path):
    """relax_rdx end to end with the stand-in: the energy falls, the JSON and the relaxed PDB are
    written, and a second run continues from the best point instead of the paper's cell."""
    from relax_rdx import main as relax
    output = str(tmp_path / "relaxed.json")
    first = relax(["--calculator", "lj", "--max-evaluations", "6", "--output", output])
    assert first["history"][-1]["energy_eV"] < first["history"][0]["energy_eV"]
    assert first["history"][0]["cell_A"] == list(CELL)
    pdb = app.PDBFile(str(tmp_path / "relaxed.pdb"))
    assert pdb.topology.getNumResidues() == 8 and pdb.topology.getNumAtoms() == 168
    np.testing.assert_allclose(np.diag(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)),
                               first["best"]["cell_A"], atol=1e-3)
    supercell = app.PDBFile(str(tmp_path / "relaxed-2x2x2.pdb"))
    assert supercell.topology.getNumResidues() == 64
    np.testing.assert_allclose(np.diag(supercell.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)),
                               2 * np.array(first["best"]["cell_A"]), atol=1e-3)
    second = relax(["--calculator", "lj", "--max-evaluations", "3", "--output", output])
    assert len(second["history"]) > len(first["history"])
    assert second["history"][len(first["history"])]["energy_eV"] == pytest.approx(first["best"]["energy_eV"])


def test_strained_frames_keep_molecules_and_span_the_strain(tmp_path):
    """rdx_frames: every frame is the cell under a symmetric strain within the bounds, its molecules
    moved with it as rigid bodies (or, with --affine, strained with it), one molID per RDX molecule,
    and a unique label_id."""
    from ase.io import read

    from rdx_frames import main as frames
    out = tmp_path / "frames.xyz"
    frames(["--output", str(out), "--count", "12", "--rattle", "0.0", "--seed", "3"])
    read_back = read(str(out), ":")
    frames(["--output", str(tmp_path / "affine.xyz"), "--count", "12", "--rattle", "0.0", "--seed", "3", "--affine"])
    affine = read(str(tmp_path / "affine.xyz"), ":")
    reference = app.PDBFile(os.path.join(ROOT, "example_systems", "rdx.pdb"))
    xyz = reference.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    strains = []
    for atoms, strained in zip(read_back, affine):
        deformation = np.linalg.solve(np.diag(CELL), atoms.cell.array)
        epsilon = deformation - np.eye(3)
        np.testing.assert_allclose(epsilon, epsilon.T, atol=1e-9)
        assert np.abs(np.diag(epsilon)).max() <= 0.03 and np.abs(epsilon - np.diag(np.diag(epsilon))).max() <= 0.02
        np.testing.assert_allclose(strained.positions, xyz @ deformation, atol=1e-5)
        molecules = atoms.arrays["molID"]
        assert sorted(set(molecules)) == list(range(8))
        for m in range(8):                  # rigid molecules, their centres moved with the cell
            mine, original = atoms.positions[molecules == m], xyz[molecules == m]
            np.testing.assert_allclose(mine - mine.mean(0), original - original.mean(0), atol=1e-5)
            np.testing.assert_allclose(mine.mean(0), original.mean(0) @ deformation, atol=1e-5)
        strains.append(np.diag(epsilon))
    assert np.ptp(np.array(strains), axis=0).min() > 0.02                     # the range is used
    assert len({a.info["label_id"] for a in read_back}) == 12
