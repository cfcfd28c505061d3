"""New training data: tblite labels equal the carbonate data's, labelling resumes without
relabelling, clusters keep molecules whole across periodic boundaries, and fine-tuning
(init_model, extra_train_files) starts from the initial model's weights."""
import json
import os

import numpy as np
import pytest
import yaml
from ase.io import read, write

from cgaa_openmm.modelfile import load_model
from cgaa_openmm.potential import resolve_model_path
from training.datagen.boxes import liquid_boxes, scale_molecules
from training.datagen.clusters import cut_cluster, liquid_clusters, minimum_image
from training.config import ConfigError, load_config
from training.evaluate import evaluate_file
from training.datagen.label import LabelError, label
from training.train import train

from conftest import data_file
from test_training import ROOT, run_cli, write_config

EXAMPLE = os.path.join(ROOT, "example_systems", "ecemc.pdb")


@pytest.fixture(scope="module")
def reference():
    """Three real clusters with their GFN2-xTB labels (different sizes and molecule types)."""
    frames = read(data_file("solvent_xtb_test.xyz"), index=":40")
    return [frames[i] for i in (0, 7, 31)]


def strip(frames):
    """Copies without labels, with ids."""
    out = []
    for index, atoms in enumerate(frames):
        bare = atoms.copy()
        bare.info = {"label_id": f"c{index}"}
        bare.arrays = {k: v for k, v in bare.arrays.items() if k in ("numbers", "positions", "molID")}
        out.append(bare)
    return out


def test_labels_reproduce_the_carbonate_data(tmp_path, reference):
    output = str(tmp_path / "labelled.xyz")
    label(strip(reference), output, progress=False)
    labelled = {a.info["label_id"]: a for a in read(output, index=":")}
    for index, ref in enumerate(reference):
        got = labelled[f"c{index}"]
        assert abs(got.info["energy_xtb"] - ref.info["energy_xtb"]) < 5e-4  # eV
        assert np.abs(got.arrays["forces_xtb"] - ref.arrays["forces_xtb"]).max() < 1e-3  # eV/Å
        np.testing.assert_array_equal(got.arrays["molID"], ref.arrays["molID"])
    record = json.load(open(output + ".json"))
    assert record["versions"]["tblite"] and record["settings"]["method"] == "GFN2-xTB"
    assert record["labelled"] == 3 and record["failed"] == {}


def test_periodic_labels_carry_the_stress(tmp_path, reference):
    """A periodic frame gets stress_xtb = (1/V) dE/dstrain (eV/Å^3, ASE's sign), checked against
    finite differences of tblite energies of strained cells; a cluster gets none."""
    from tblite.ase import TBLite
    cluster, box = strip(reference)[:2]
    box.cell, box.pbc = np.diag([11.0, 11.5, 12.0]), True
    box.center()
    output = str(tmp_path / "labelled.xyz")
    label([cluster, box], output, progress=False)
    labelled = {a.info["label_id"]: a for a in read(output, index=":")}
    assert "stress_xtb" not in labelled["c0"].info
    stress = np.asarray(labelled["c1"].info["stress_xtb"]).reshape(3, 3)

    def energy(strain):
        deformed = box.copy()
        deformed.set_cell(box.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        deformed.calc = TBLite(method="GFN2-xTB", verbosity=0)
        return deformed.get_potential_energy()
    h = 1e-3
    for i, j in [(0, 0), (1, 2)]:
        step = np.zeros((3, 3))
        step[i, j] = step[j, i] = h if i == j else h / 2  # shear: eps_ij = eps_ji = h/2
        numeric = (energy(step) - energy(-step)) / (2 * h) / box.get_volume()
        assert stress[i, j] == pytest.approx(numeric, rel=0.02, abs=2e-6)
    assert np.abs(stress).max() > 1e-4


def test_labelling_resumes_without_relabelling_and_workers_agree(tmp_path, reference):
    frames = strip(reference)
    output = str(tmp_path / "labelled.xyz")
    label(frames[:2], output, progress=False)  # an interrupted run: two of three done
    done = read(output, index=":")
    done[0].info["energy_xtb"] = 123.0          # marks a finished label: must not be recomputed
    write(output, done, format="extxyz")
    label(frames, output, workers=2, progress=False)
    result = read(output, index=":")
    assert sorted(a.info["label_id"] for a in result) == ["c0", "c1", "c2"]
    assert [a.info["energy_xtb"] for a in result if a.info["label_id"] == "c0"] == [123.0]
    serial = str(tmp_path / "serial.xyz")
    label(frames[2:], serial, progress=False)
    parallel = [a for a in result if a.info["label_id"] == "c2"][0]
    assert parallel.info["energy_xtb"] == pytest.approx(read(serial).info["energy_xtb"], abs=1e-8)


def test_bad_frames_are_named(tmp_path, reference):
    frames = strip(reference)
    frames[1].positions[0, 0] = np.nan
    with pytest.raises(LabelError, match="configuration c1: non-finite"):
        label(frames, str(tmp_path / "x.xyz"), progress=False)
    frames = strip(reference)
    frames[2].info["label_id"] = "c0"
    with pytest.raises(LabelError, match="not unique"):
        label(frames, str(tmp_path / "x.xyz"), progress=False)


def test_cluster_keeps_molecules_whole_across_the_boundary():
    rng = np.random.default_rng(3)
    box = np.diag([12.0, 13.0, 14.0])
    shape = rng.normal(scale=0.8, size=(5, 3))                      # one rigid 5-atom molecule
    centres = rng.uniform(0, 1, size=(30, 3)) @ box
    centres[0] = [0.2, 6.0, 13.9]                                    # the centre sits on two faces
    positions = (centres[:, None, :] + shape[None]).reshape(-1, 3)
    positions -= np.floor(positions @ np.linalg.inv(box)) @ box     # wrapped: molecules split
    molecule = np.repeat(np.arange(30), 5)
    indices, xyz = cut_cluster(positions, molecule, np.arange(5), 4.0, box)
    labels = molecule[indices]
    assert set(labels[:5]) == {0}
    for m in np.unique(labels):
        rows = xyz[labels == m]
        np.testing.assert_allclose(rows - rows[0], shape - shape[0], atol=1e-9)  # whole, unwrapped
    # Exactly the molecules with an atom within 4 Å (minimum image) of the centre molecule.
    d = np.linalg.norm(minimum_image(positions[:, None] - positions[None, :5], box), axis=-1).min(1)
    expected = {int(m) for m in molecule[d < 4.0]}
    assert set(labels.tolist()) == expected
    # Each molecule sits at the image of its closest contact with the centre.
    dc = np.linalg.norm(xyz[:, None] - xyz[None, :5], axis=-1).min(1)
    for m in np.unique(labels[5:]):
        assert dc[labels == m].min() == pytest.approx(d[molecule == m].min(), abs=1e-9)
    capped, _ = cut_cluster(positions, molecule, np.arange(5), 4.0, box, max_molecules=1)
    nearest = min((m for m in expected if m != 0), key=lambda m: d[molecule == m].min())
    assert set(molecule[capped].tolist()) == {0, nearest}


def test_compressed_liquid_clusters_move_rigid_molecules_closer():
    plain = liquid_clusters(EXAMPLE, None, 4, 3.0, 5, seed=2)
    pulled = liquid_clusters(EXAMPLE, None, 4, 3.0, 5, seed=2, scale=(0.8, 0.8))
    for a, b in zip(plain, pulled):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        grain = a.arrays["molID"]
        for g in np.unique(grain):
            x, y = a.positions[grain == g], b.positions[grain == g]
            np.testing.assert_allclose(y - y[0], x - x[0], atol=1e-9)  # rigid
        def com(atoms, g):
            rows = atoms.arrays["molID"] == g
            return np.average(atoms.positions[rows], axis=0, weights=atoms.get_masses()[rows])
        for g in range(1, grain.max() + 1):   # molID 0 is the centre molecule
            np.testing.assert_allclose(com(b, g) - com(b, 0), 0.8 * (com(a, g) - com(a, 0)), atol=1e-4)  # ASE vs mdtraj masses


def test_box_scaling_is_a_barostat_move():
    """Molecules stay rigid, their centres keep their fractional coordinates, the box scales."""
    rng = np.random.default_rng(5)
    box = np.array([[12.0, 0, 0], [1.0, 13.0, 0], [-0.5, 0.7, 14.0]])
    shape = rng.normal(scale=0.8, size=(4, 3))
    centres = rng.uniform(0, 1, size=(20, 3)) @ box
    positions = (centres[:, None, :] + shape[None]).reshape(-1, 3)
    positions -= np.floor(positions @ np.linalg.inv(box)) @ box     # wrapped: molecules split
    molecule = np.repeat(np.arange(20), 4)
    scaled, new_box = scale_molecules(positions, molecule, box, 1.07)
    np.testing.assert_allclose(new_box, 1.07 * box)
    for m in range(20):
        rows = scaled[molecule == m]
        np.testing.assert_allclose(rows - rows[0], shape - shape[0], atol=1e-9)
        frac_new = rows.mean(0) @ np.linalg.inv(new_box)
        frac_old = (centres[m] + shape.mean(0)) @ np.linalg.inv(box)
        delta = frac_new - frac_old
        np.testing.assert_allclose(delta, np.round(delta), atol=1e-9)


def test_liquid_boxes_are_periodic_scaled_frames():
    boxes = liquid_boxes(EXAMPLE, None, 3, scale=(0.98, 1.1), seed=1, prefix="b")
    edge = 20.165
    for atoms in boxes:
        assert atoms.pbc.all() and atoms.info["label_id"].startswith("b-")
        assert np.diag(atoms.cell) == pytest.approx([edge * atoms.info["scale"]] * 3, abs=2e-3)
        assert atoms.arrays["molID"].max() == 59 and len(atoms) == 800
    with pytest.raises(ValueError, match="box edge"):
        liquid_boxes(EXAMPLE, None, 1, scale=(0.5, 0.5), min_edge=12.0)


def test_a_crystal_supercell_gives_its_unit_cells(tmp_path):
    """The α-RDX 2 x 2 x 2 supercell, as written: every box is the unit cell, 8 whole molecules
    whose centres are those of example_systems/rdx.pdb to a lattice translation. Shuffled
    molecules (no lattice left) or repeats that do not divide the supercell are errors."""
    from ase.geometry import get_distances
    supercell = os.path.join(ROOT, "example_systems", "rdx-2x2x2.pdb")
    unit = read(os.path.join(ROOT, "example_systems", "rdx.pdb"))
    unit_centres = np.array([unit.positions[unit.arrays["residuenumbers"] == r].mean(0)
                             for r in np.unique(unit.arrays["residuenumbers"])])
    boxes = liquid_boxes(supercell, None, 4, seed=2, subcells=(2, 2, 2), min_edge=10.0)
    for atoms in boxes:
        assert len(atoms) == 168 and atoms.arrays["molID"].max() == 7
        np.testing.assert_allclose(np.asarray(atoms.cell), np.asarray(unit.cell), atol=1e-3)
        centres = np.array([atoms.positions[atoms.arrays["molID"] == m].mean(0) for m in range(8)])
        assert (np.linalg.norm(atoms.positions - centres[atoms.arrays["molID"]], axis=1) < 4.0).all()  # whole
        distance = get_distances(centres, unit_centres, cell=unit.cell, pbc=True)[1]
        assert distance.min(axis=1).max() < 1e-3                           # the same lattice sites
    out = str(tmp_path / "cells.xyz")
    run_cli("boxes", supercell, "-o", out, "--n", "2", "--subcells", "2", "2", "2", check=True)
    assert [len(a) for a in read(out, ":")] == [168, 168]
    with pytest.raises(ValueError, match="cannot fill 3 x 1 x 1 equal cells"):
        liquid_boxes(supercell, None, 1, subcells=(3, 1, 1))
    with pytest.raises(ValueError, match="not a 4 x 1 x 1 supercell of a crystal"):
        liquid_boxes(supercell, None, 1, subcells=(4, 1, 1))
    from openmm import app, unit
    pdb = app.PDBFile(supercell)
    positions = np.array(pdb.positions.value_in_unit(unit.angstrom))
    residue = np.array([a.residue.index for a in pdb.topology.atoms()])
    rng = np.random.default_rng(0)
    for r in range(64):                     # every molecule to a random place: no crystal left
        positions[residue == r] += rng.uniform(0, 1, 3) @ np.asarray(read(supercell).cell)
    app.PDBFile.writeFile(pdb.topology, positions * unit.angstrom,
                          open(tmp_path / "melt.pdb", "w"))
    with pytest.raises(ValueError, match="not a 2 x 2 x 2 supercell of a crystal .* the crystal has melted"):
        liquid_boxes(str(tmp_path / "melt.pdb"), None, 1, subcells=(2, 2, 2))


def test_clusters_and_label_commands(tmp_path):
    clusters = str(tmp_path / "clusters.xyz")
    result = run_cli("clusters", EXAMPLE, "-o", clusters, "--n", "2", "--max-molecules", "1")
    assert result.returncode == 0, result.stderr
    frames = read(clusters, index=":")
    assert len(frames) == 2 and all(f.arrays["molID"].max() == 1 for f in frames)
    result = run_cli("label", clusters, str(tmp_path / "labelled.xyz"))
    assert result.returncode == 0, result.stderr
    assert len(read(str(tmp_path / "labelled.xyz"), index=":")) == 2
    result = run_cli("clusters", str(tmp_path / "missing.pdb"), "-o", clusters)
    assert result.returncode != 0 and "file not found" in result.stderr and "Traceback" not in result.stderr


def test_fine_tuning_starts_from_the_initial_model(tmp_path):
    with pytest.raises(ConfigError, match="'model.channels' cannot be set with 'init_model'"):
        load_config(write_config(tmp_path, init_model="carbonates-xtb"))
    extra = str(tmp_path / "extra.xyz")
    clusters = [a for a in read(data_file("solvent_xtb_train_50.xyz"), index=":")
                if a.info.get("config_type") != "IsolatedAtom"]
    write(extra, clusters[-2:], format="extxyz")
    path = write_config(tmp_path, init_model="carbonates-xtb", extra_train_files=[extra], epochs=1,
                        lr=1e-12, min_lr=0.0, max_train=6, ema_decay=0.0)
    config = yaml.safe_load(open(path))
    del config["model"]
    open(path, "w").write(yaml.safe_dump(config))
    metadata = train(load_config(path))
    assert metadata["training"]["extra_train_files"] == ["extra.xyz"]
    tuned, _ = load_model(str(tmp_path / "model.pt"))
    initial, _ = load_model(resolve_model_path("carbonates-xtb"))
    assert tuned.hyperparameters["channels"] == initial.hyperparameters["channels"]
    assert tuned.hyperparameters["contact_radii"] != initial.hyperparameters["contact_radii"]  # refit
    # lr 1e-12: the exported weights are the initial model's, so are its errors on other data.
    for name, value in evaluate_file(str(tmp_path / "model.pt"), extra).items():
        if name.endswith("rmse") or name.endswith("mae") or "per_atom" in name:
            assert value == pytest.approx(evaluate_file(resolve_model_path("carbonates-xtb"), extra)[name],
                                          rel=1e-5)
