"""The α-RDX cell built from its published asymmetric unit (example_systems/build_rdx.py)."""
import json
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


# -- the crystal under NPT (benchmarks/rdx_npt.py) -------------------------------------------------

def supercell():
    """Topology, positions (nm), box edges (nm) and element masses of the GFN2-relaxed 2x2x2 supercell."""
    pdb = app.PDBFile(os.path.join(ROOT, "example_systems", "rdx-gfn2-2x2x2.pdb"))
    box = np.diag(np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))
    masses = np.array([atom.element.mass.value_in_unit(unit.dalton) for atom in pdb.topology.atoms()])
    return pdb.topology, np.array(pdb.positions.value_in_unit(unit.nanometer)), box, masses


def test_crystal_order_is_perfect_under_affine_moves_and_lost_for_random_orientations():
    """The start is on its sites with <P2> = 1; a box stretched per axis with every molecule moved
    rigidly to its scaled site, a common shift and molecules wrapped by a box vector keep both; random
    rotations of every molecule about its centre give <P2> ~ 0; one displaced molecule gives the
    RMSD by hand."""
    from rdx_npt import Crystal
    from scipy.spatial.transform import Rotation
    topology, x, box, masses = supercell()
    crystal = Crystal(topology, x, box, masses)
    assert len(crystal.molecules) == 64
    assert crystal.order(x, box) == pytest.approx((0.0, 1.0), abs=1e-9)
    scaled_box = box * np.array([1.03, 0.97, 1.01])
    centres = crystal.centres(x, box)
    moved = x.copy()
    for m, centre in zip(crystal.molecules, centres):
        moved[m] += centre / box * scaled_box - centre + np.array([0.05, -0.02, 0.3])
    moved[crystal.molecules[5]] += scaled_box * np.array([1, 0, -1])          # an image of molecule 5
    assert crystal.order(moved, scaled_box) == pytest.approx((0.0, 1.0), abs=1e-9)
    rotated = x.copy()
    for m, centre, rotation in zip(crystal.molecules, centres, Rotation.random(64, random_state=3)):
        rotated[m] = rotation.apply(x[m] - centre) + centre
    rmsd, p2 = crystal.order(rotated, box)
    assert rmsd < 1e-3 and abs(p2) < 0.1
    shifted = x.copy()
    shifted[crystal.molecules[0]] += np.array([0.064, 0.0, 0.0])              # 0.64 Å along a
    expected = np.sqrt((0.64 * 63 / 64) ** 2 / 64 + 63 * (0.64 / 64) ** 2 / 64)   # drift of the mean removed
    assert crystal.order(shifted, box) == pytest.approx((expected, 1.0), abs=1e-9)


def test_cell_md_stretches_the_cell_with_rigid_molecules_and_reports_their_order(tmp_path):
    """rdx_cell_md --scale: the cell is stretched by the factor and every molecule moved rigidly to its
    scaled centre, so the first frame (step 0) is on its sites with <P2> = 1; the frames carry molID,
    label_id and both order parameters."""
    from ase.io import read
    from scipy.spatial.distance import pdist

    from rdx_cell_md import main as cell_md
    frames = cell_md(["--model", "rdx-xtb", "--scale", "1.04", "--temperature", "600", "--equilibrate", "0",
                      "--interval", "2", "--frames", "2", "--output", str(tmp_path / "cells.xyz")])
    start = read(os.path.join(ROOT, "example_systems", "rdx-gfn2.pdb"))
    np.testing.assert_allclose(frames[0].cell.array, 1.04 * start.cell.array, atol=1e-9)
    molecules = frames[0].arrays["molID"]
    assert sorted(set(molecules)) == list(range(8))
    for m in range(8):
        mine, original = frames[0].positions[molecules == m], start.positions[molecules == m]
        np.testing.assert_allclose(pdist(mine), pdist(original), atol=1e-9)
        np.testing.assert_allclose(mine.mean(0), 1.04 * original.mean(0), atol=1e-9)
    assert frames[0].info["centre_rmsd_A"] == pytest.approx(0.0, abs=1e-3)
    assert frames[0].info["orientation_p2"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < frames[1].info["centre_rmsd_A"] < 0.5 and 0.9 < frames[1].info["orientation_p2"] < 1.0
    written = read(str(tmp_path / "cells.xyz"), ":")
    assert [f.info["label_id"] for f in written] == ["rdx-cell-00000", "rdx-cell-00002"]


@pytest.mark.slow
def test_rdx_npt_run_continued_elsewhere_is_the_run_never_cut(tmp_path):
    """An untrained model on the 2x2x2 supercell, anisotropic NPT on Reference: a run cut after two
    chunks and continued from a copy of its state ends bit for bit as the one never cut; the box
    moves per axis with molecules whole (orientations kept), the report fills rdx.json's lattice
    keys; a ramp's setpoint rises over production; other settings are refused."""
    import shutil
    import torch
    from cgaa_openmm.model import CGAAModel
    from cgaa_openmm.modelfile import save_model
    from rdx_npt import main, setpoint
    torch.manual_seed(0)
    model = CGAAModel([1, 6, 7, 8], [-10.0, -48.0, -60.0, -100.0], channels=8, lmax=1, embed_layers=1,
                      interactions=1, grain_cutoff=6.0).double().eval()
    save_model(str(tmp_path / "tiny.pt"), model, {"grains": "residue"})
    with open(tmp_path / "rdx.json", "w") as file:
        json.dump({"force_rmse_crystal": 0.2, "lattice_model_A": None}, file)
    common = ["run", "--model", str(tmp_path / "tiny.pt"), "--platform", "Reference", "--precision", "double",
              "--threads", "1", "--equilibration-ps", "0.004", "--frame-ps", "0.004", "--chunk-ps", "0.008",
              "--barostat-interval", "1", "--blocks", "2", "--temperature", "300", "--rdx-json", str(tmp_path / "rdx.json")]
    main(common + ["--production-ps", "0.020", "--states", str(tmp_path / "whole"),
                   "--output", str(tmp_path / "whole.json"), "--name", "r"])
    main(common + ["--production-ps", "0.012", "--states", str(tmp_path / "cut"), "--output", str(tmp_path / "cut.json"),
                   "--name", "r"])
    shutil.copytree(tmp_path / "cut", tmp_path / "elsewhere")
    entry = main(common + ["--production-ps", "0.020", "--states", str(tmp_path / "elsewhere"),
                           "--output", str(tmp_path / "resumed.json"), "--name", "r"])
    first = json.load(open(tmp_path / "whole" / "r" / "run.json"))
    second = json.load(open(tmp_path / "elsewhere" / "r" / "run.json"))
    assert first["step"] == second["step"] == 12 and first["state_xml"] == second["state_xml"]
    assert first["series"] == second["series"] and len(first["series"]["step"]) == 6
    series = first["series"]
    for axis in ("a_A", "b_A", "c_A"):
        assert len(set(series[axis])) > 1                                   # each axis moved
    assert max(series["site_rmsd_A"]) < 0.2 and min(series["orientation_p2"]) > 0.95
    assert entry["production_ps"] == pytest.approx(0.020) and len(entry["lattice_A"]) == 3
    assert entry["lattice_A"][0] == pytest.approx(12.99, abs=0.1) and entry["kinetic_temperature_K"][0] > 0
    rdx = json.load(open(tmp_path / "rdx.json"))
    assert rdx["lattice_model_A"] == entry["lattice_A"] and rdx["production_ps"] == entry["production_ps"]
    assert rdx["force_rmse_crystal"] == 0.2 and (tmp_path / "resumed.png").exists()
    ramp = dict(temperature_K=300.0, ramp_to_K=700.0, equilibration_ps=5.0, production_ps=20.0)
    assert [setpoint(ramp, t) for t in (1.0, 5.0, 15.0, 25.0, 30.0)] == [300.0, 300.0, 500.0, 700.0, 700.0]
    with pytest.raises(SystemExit, match="other settings"):
        main(common + ["--production-ps", "0.020", "--states", str(tmp_path / "elsewhere"), "--name", "r",
                       "--timestep", "1", "--output", str(tmp_path / "x.json")])


# -- the shipped model ----------------------------------------------------------------------------

def test_rdx_xtb_by_name_in_openmm_is_the_training_path_on_a_periodic_frame():
    """``rdx-xtb`` loads by name; on a thermal frame of the 2x2x2 supercell (molecules moved off
    their sites, box edges over twice the cutoff) its OpenMM energy and forces (Reference, float64)
    equal the training path's (the ASE calculator, float64) to 1e-10 (energy) and 1e-8 (forces) relative,
    as in test_periodic.py, and the frame's
    forces are those of a crystal, not of overlapping atoms."""
    from ase import Atoms
    from cgaa_openmm import CGAAPotential
    from cgaa_openmm.potential import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
    from training.calculator import CGAACalculator
    import openmm
    topology, x, box, _ = supercell()
    rng = np.random.default_rng(4)
    x = x + rng.normal(scale=0.003, size=x.shape)                 # 0.03 Å thermal-like noise
    potential = CGAAPotential.load("rdx-xtb")
    system = potential.createSystem(topology, precision="double")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    atoms = Atoms(numbers=[a.element.atomic_number for a in topology.atoms()], positions=x * ANGSTROM_PER_NM,
                  cell=np.diag(box) * ANGSTROM_PER_NM, pbc=True)
    atoms.arrays["molID"] = np.array([a.residue.index for a in topology.atoms()])
    atoms.calc = CGAACalculator("rdx-xtb")
    e_ref = atoms.get_potential_energy() * KJ_PER_MOL_PER_EV
    f_ref = atoms.get_forces() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM
    # measured: 3e-16 (energy) and 2e-16 (forces); before the couplings of blocks.ChannelwiseProduct
    # were kept exact under casts (test_model.py), 1.1e-10 and 8.6e-9
    assert energy == pytest.approx(e_ref, rel=1e-10)
    assert np.abs(forces - f_ref).max() < 1e-8 * np.abs(f_ref).max()
    assert np.abs(f_ref).max() / (KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM) < 15.0   # eV/Å


def test_bad_input_is_named(tmp_path):
    """An asymmetric unit with an atom missing names the formula; the single cell (10.7 Å across)
    in OpenMM names the box smaller than twice the model's 10 Å cutoff."""
    from build_rdx import ASYMMETRIC_UNIT
    from cgaa_openmm import CGAAPotential
    lines = open(ASYMMETRIC_UNIT).read().splitlines()
    last_h = max(k for k, line in enumerate(lines) if line.split()[1:2] == ["H"])
    (tmp_path / "unit.txt").write_text("\n".join(lines[:last_h] + lines[last_h + 1:]) + "\n")
    with pytest.raises(SystemExit, match=r"'H': 5.*missing"):
        main(["--asymmetric-unit", str(tmp_path / "unit.txt"), "--output-dir", str(tmp_path)])
    pdb = app.PDBFile(os.path.join(ROOT, "example_systems", "rdx.pdb"))
    with pytest.raises(ValueError, match="twice the cutoff"):
        CGAAPotential.load("rdx-xtb").createSystem(pdb.topology)


@pytest.mark.slow
def test_relaxation_with_a_model_and_expanded_frames(tmp_path):
    """relax_rdx takes a CGAA model as its calculator (its first energy is the ASE calculator's on
    the paper's cell), and rdx_frames --relaxation rebuilds the cells of its path (same energies);
    rdx_frames --tension draws expansions up to the tension, compressions down
    to -strain only, molecules rigid."""
    import torch
    from cgaa_openmm.model import CGAAModel
    from cgaa_openmm.modelfile import save_model
    from rdx_frames import main as frames
    from relax_rdx import main as relax
    from training.calculator import CGAACalculator
    torch.manual_seed(0)
    model = CGAAModel([1, 6, 7, 8], [-10.0, -48.0, -60.0, -100.0], channels=8, lmax=1, embed_layers=1,
                      interactions=1, grain_cutoff=6.0).eval()
    save_model(str(tmp_path / "tiny.pt"), model, {"grains": "molecule"})
    record = relax(["--calculator", "model", "--model", str(tmp_path / "tiny.pt"), "--max-evaluations", "3",
                    "--output", str(tmp_path / "relaxed.json")])
    assert record["method"] == "CGAA model tiny.pt (float64)"
    from ase import Atoms
    from build_rdx import read_asymmetric_unit, unit_cell
    labels, elements, fractional = read_asymmetric_unit()
    cell = Atoms(elements * 8, positions=unit_cell(labels, elements, fractional).reshape(-1, 3), cell=CELL, pbc=True)
    cell.calc = CGAACalculator(str(tmp_path / "tiny.pt"))
    assert record["history"][0]["energy_eV"] == pytest.approx(cell.get_potential_energy(), rel=1e-9)
    path = frames(["--relaxation", str(tmp_path / "relaxed.json"), "--count", "2", "--rattle", "0",
                   "--output", str(tmp_path / "path.xyz")])
    for frame, step in zip(path, (record["history"][0], record["history"][-1])):
        frame.calc = CGAACalculator(str(tmp_path / "tiny.pt"))
        # the path keeps fractions to 1e-6 (1e-5 Å): energies to 1e-3 eV of 8e3
        assert frame.get_potential_energy() == pytest.approx(step["energy_eV"], abs=1e-3)
        assert list(np.bincount(frame.arrays["molID"])) == [21] * 8
    expanded = frames(["--cell", os.path.join(ROOT, "example_systems", "rdx-gfn2.pdb"), "--count", "20",
                       "--tension", "0.5", "--shear", "0", "--rattle", "0", "--output", str(tmp_path / "x.xyz")])
    strains = np.array([[float(v) for v in f.info["strain"].split()] for f in expanded])[:, [0, 3, 5]]
    assert strains.min() >= -0.03 and strains.max() > 0.3 and strains.max() <= 0.5
    assert {f.info["config_type"] for f in expanded} == {"crystal-expanded"}
    start = expanded[0].copy()
    for frame in expanded:
        for m in range(8):
            inside = frame.arrays["molID"] == m
            d = frame.positions[inside] - frame.positions[inside].mean(0)
            d0 = start.positions[inside] - start.positions[inside].mean(0)
            np.testing.assert_allclose(d, d0, atol=1e-9)      # rigid molecules
