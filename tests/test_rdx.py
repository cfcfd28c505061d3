"""The α-RDX cell built from its published asymmetric unit (example_systems/build_rdx.py)."""
import os

import numpy as np
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
