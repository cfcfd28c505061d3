"""The ASE calculator (training/calculator.py): the training path's energy and forces, the stress as
the strain derivative of the energy, single crystal cells narrower than two cutoffs, bad input."""

import numpy as np
import pytest
import torch
from ase.io import read

from cgaa_openmm.model import CGAAModel
from cgaa_openmm.modelfile import save_model
from training.calculator import CGAACalculator
from training.evaluate import predict_frame

from conftest import data_file
from test_periodic import liquid_frames, rdx_cell, tiled


@pytest.fixture(scope="module")
def rdx_model(tmp_path_factory):
    """An untrained RDX model file (grain cutoff 6 Å: the 10.67 Å cell is 1.8 cutoffs wide)."""
    torch.manual_seed(5)
    model = CGAAModel([1, 6, 7, 8], [-10.0, -48.0, -60.0, -100.0], channels=8, lmax=2, embed_layers=1,
                      interactions=2, grain_cutoff=6.0, pair_cutoff=3.0).double().eval()
    model.energy_scale = 3.0
    path = str(tmp_path_factory.mktemp("model") / "rdx.pt")
    save_model(path, model, {"grains": "molecule"})
    return path


def test_the_calculator_gives_the_training_paths_energy_and_forces():
    atoms = liquid_frames()[1]
    calculator = CGAACalculator("carbonates-xtb-fast")
    atoms.calc = calculator
    energy, forces = predict_frame(calculator.model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0, atol=1e-10)
    cluster = read(data_file("solvent_xtb_train_20.xyz"), "-1")
    del cluster.arrays["molID"]                      # grains from bonds
    cluster.calc = calculator
    assert np.isfinite(cluster.get_forces()).all() and "stress" not in cluster.calc.results


def test_the_stress_is_the_strain_derivative_and_a_cell_is_its_supercell(rdx_model):
    atoms = rdx_cell(11)
    atoms.calc = CGAACalculator(rdx_model)
    stress = atoms.get_stress(voigt=False)
    volume, h = atoms.get_volume(), 1e-5
    for a, b in ((0, 0), (1, 2), (2, 2)):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * h / (1 if a == b else 2)
            strain[b, a] = strain[a, b] if a != b else strain[a, a]
            moved = atoms.copy()
            moved.set_cell(np.asarray(atoms.cell) @ strain, scale_atoms=True)
            moved.calc = CGAACalculator(rdx_model)
            energies.append(moved.get_potential_energy())
        derivative = (energies[0] - energies[1]) / (2 * h) / volume
        assert stress[a, b] == pytest.approx(derivative, rel=1e-4, abs=1e-7)
    assert np.abs(stress).max() > 1e-4
    big = tiled(atoms)
    big.calc = CGAACalculator(rdx_model)
    assert big.get_potential_energy() / 8 == pytest.approx(atoms.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(big.get_forces()[:len(atoms)], atoms.get_forces(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), rtol=1e-8, atol=1e-12)


def test_bad_input_is_named(rdx_model):
    atoms = rdx_cell(1)
    atoms.numbers[0] = 16
    atoms.calc = CGAACalculator(rdx_model)
    with pytest.raises(ValueError, match=r"atomic numbers \[16\] are not in the model"):
        atoms.get_potential_energy()
    atoms = rdx_cell(1)
    atoms.positions[3, 1] = np.nan
    atoms.calc = CGAACalculator(rdx_model)
    with pytest.raises(ValueError, match="NaN"):
        atoms.get_potential_energy()
