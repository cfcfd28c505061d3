"""The training pipeline: config validation, data errors, metrics, units, grains, resume after
kill -9, DDP gradients, and the evaluate command."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from ase.io import read, write

from cgaa_openmm.modelfile import load_model
from training.config import OPTIONS, ConfigError, load_config
from training.data import DataError, read_configs
from training.metrics import error_metrics

from conftest import data_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = dict(channels=8, lmax=1, embed_layers=1, interactions=1, n_radial=4, radial_hidden=16)


def write_config(tmp_path, name="config.yaml", **options):
    config = dict(train_file=data_file("solvent_xtb_train_20.xyz"), model=TINY_MODEL, epochs=3,
                  batch_size=4, output=str(tmp_path / "model.pt"))
    config.update(options)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cgaa_openmm.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("options, named", [
    (dict(learning_rate=0.01), "learning_rate"),
    (dict(grains="residues"), "grains"),
    (dict(batch_size=0), "batch_size"),
    (dict(dtype="float16"), "dtype"),
    (dict(model=dict(TINY_MODEL, chanels=8)), "model.chanels"),
    (dict(ema_decay=1.5), "ema_decay"),
    (dict(grains="topology"), "topology_file"),
])
def test_config_errors_name_the_bad_key(tmp_path, options, named):
    with pytest.raises(ConfigError, match=re.escape(repr(named)) + "|" + re.escape(named)):
        load_config(write_config(tmp_path, **options))


def test_cli_reports_config_error_without_traceback(tmp_path):
    result = run_cli("train", write_config(tmp_path, epoch=3))
    assert result.returncode != 0
    assert "unknown option 'epoch'" in result.stderr and "Traceback" not in result.stderr


def test_every_option_is_documented_with_its_default():
    text = open(os.path.join(ROOT, "docs", "training.md")).read()
    for key, (default, _) in OPTIONS.items():
        row = re.search(rf"^\| `{key}` \| (.*?) \|", text, re.M)
        assert row, f"docs/training.md does not document option {key!r}"
        assert (default is None and row.group(1) == "—") or f"`{default}`" in row.group(1) or \
            (default == {} and row.group(1) == "`{}`"), f"{key}: default {default!r} not in {row.group(1)!r}"


def test_metrics_on_a_hand_checkable_case():
    # Two configurations of 2 and 4 atoms, energies off by +0.2 and -0.4 eV: per atom
    # +0.1 and -0.1 eV -> RMSE = MAE = 100 meV/atom. Six force components off by 0, 3, -4
    # (and zeros): RMSE = sqrt((9 + 16) / 18) eV/Å, MAE = 7 / 18 eV/Å.
    e_ref = torch.tensor([1.0, 2.0])
    e_pred = torch.tensor([1.2, 1.6])
    f_ref = torch.zeros(6, 3)
    f_pred = f_ref.clone()
    f_pred[1, 0], f_pred[4, 2] = 3.0, -4.0
    m = error_metrics(e_pred, e_ref, torch.tensor([2.0, 4.0]), f_pred, f_ref)
    assert m["energy_rmse_mev_per_atom"] == pytest.approx(100.0)
    assert m["energy_mae_mev_per_atom"] == pytest.approx(100.0)
    assert m["forces_rmse"] == pytest.approx(np.sqrt(25 / 18))
    assert m["forces_mae"] == pytest.approx(7 / 18)


@pytest.fixture(scope="module")
def small_frames():
    frames = [a for a in read(data_file("solvent_xtb_train_20.xyz"), index=":")
              if a.info.get("config_type") != "IsolatedAtom"]
    return frames[:3]


def test_missing_forces_unknown_element_and_bad_grain_column(tmp_path, small_frames):
    frames = [a.copy() for a in small_frames]
    path = str(tmp_path / "no_forces.xyz")
    write(path, frames)
    with pytest.raises(DataError, match="no per-atom forces 'forces'"):
        read_configs(path, forces_key="forces")
    with pytest.raises(DataError, match="no energy 'energy'"):
        read_configs(path, energy_key="energy")
    with pytest.raises(DataError, match="no grain column 'resid'"):
        read_configs(path, grain_key="resid")

    # One grain id for two molecules far apart: not a molecule.
    bad = frames[0].copy()
    molid = bad.arrays["molID"].copy()
    bad.positions[molid == molid.max()] += 30.0
    bad.arrays["molID"][:] = molid.min()
    path = str(tmp_path / "bad_grains.xyz")
    write(path, [bad])
    with pytest.raises(DataError, match=r"grain column 'molID' puts atoms .* not a molecule"):
        read_configs(path, grain_span=5.0)

    text = open(data_file("solvent_xtb_train_20.xyz")).read().split("\n")
    n = int(text[0])
    lines = text[:2] + ["Xq" + text[2][1:]] + text[3:n + 2]
    path = str(tmp_path / "unknown_element.xyz")
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"unknown_element.xyz: cannot be read.*Xq"):
        read_configs(path)


def test_units_are_converted_to_ev_and_angstrom(tmp_path, small_frames):
    from ase import units
    frames = [a.copy() for a in small_frames]
    kcal = units.kcal / units.mol
    for a in frames:
        a.info["energy_xtb"] /= kcal
        a.arrays["forces_xtb"] = a.arrays["forces_xtb"] / kcal * 10.0   # kcal/mol/nm
        a.positions /= 10.0                                            # nm
    path = str(tmp_path / "kcal_nm.xyz")
    write(path, frames)
    converted = read_configs(path, energy_unit="kcal/mol", length_unit="nm")
    reference = read_configs(data_file("solvent_xtb_train_20.xyz"))[:3]
    for c, r in zip(converted, reference):
        assert c.energy == pytest.approx(r.energy, rel=1e-12)
        torch.testing.assert_close(c.positions, r.positions)
        torch.testing.assert_close(c.forces, r.forces)


def test_grains_from_bonds_and_from_a_topology_match_the_molecule_column(tmp_path, small_frames):
    from cgaa_openmm.grains import topology_from_atoms
    from openmm import app
    path = data_file("solvent_xtb_train_20.xyz")
    by_column = read_configs(path)
    by_bonds = read_configs(path, grains="bonds")
    for a, b in zip(by_column, by_bonds):
        assert torch.equal(a.grain, b.grain)
    frame = small_frames[0]
    pdb = str(tmp_path / "frame.pdb")
    with open(pdb, "w") as f:
        app.PDBFile.writeFile(topology_from_atoms(frame), frame.positions * 0.1, f)
    xyz = str(tmp_path / "frame.xyz")
    write(xyz, [frame])
    by_topology = read_configs(xyz, grains="topology", topology_file=pdb)
    assert torch.equal(by_topology[0].grain, by_column[0].grain)
    write(xyz, [small_frames[1]])
    with pytest.raises(DataError, match="atoms do not match"):
        read_configs(xyz, grains="topology", topology_file=pdb)


def final_validation(run_dir):
    rows = open(os.path.join(run_dir, "metrics.csv")).read().strip().split("\n")
    header, last = rows[0].split(","), rows[-1].split(",")
    return dict(zip(header, map(float, last))), len(rows) - 1


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path):
    epochs = 6
    straight = write_config(tmp_path, "straight.yaml", epochs=epochs, output=str(tmp_path / "a.pt"))
    assert run_cli("train", straight).returncode == 0
    reference, n_ref = final_validation(str(tmp_path / "a_run"))

    killed = write_config(tmp_path, "killed.yaml", epochs=epochs, output=str(tmp_path / "b.pt"))
    process = subprocess.Popen([sys.executable, "-m", "cgaa_openmm.cli", "train", killed], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:                       # wait for the end of epoch 2, then kill mid-epoch 3
        if json.loads(line).get("epoch", 0) == 2 if line.startswith("{") else False:
            time.sleep(0.1)
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not os.path.exists(tmp_path / "b.pt"), "the run finished before it was killed"
    state = torch.load(tmp_path / "b_run" / "checkpoint.pt", weights_only=False)
    assert 2 <= state["epoch"] < epochs

    resumed = run_cli("train", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    result, n_rows = final_validation(str(tmp_path / "b_run"))
    assert n_rows == n_ref == epochs
    for key in ("valid_forces_rmse", "valid_energy_rmse_mev_per_atom"):
        assert result[key] == pytest.approx(reference[key], rel=1e-4)
    _, metadata = load_model(str(tmp_path / "b.pt"))
    assert metadata["training"]["epochs"] == epochs


def test_resume_refuses_a_changed_config(tmp_path):
    path = write_config(tmp_path, epochs=1)
    assert run_cli("train", path).returncode == 0
    path = write_config(tmp_path, epochs=1, lr=0.001)
    result = run_cli("train", path, "--resume")
    assert result.returncode != 0 and "different config" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_ddp_two_processes_give_the_same_first_step_gradients(tmp_path):
    path = write_config(tmp_path, batch_size=5, model=dict(TINY_MODEL, channels=4), dtype="float64")
    helper = os.path.join(ROOT, "tests", "ddp_first_step.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, helper, path, str(tmp_path / "one.pt")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29533", helper, path, str(tmp_path / "two.pt")],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys()
    assert sum(float(g.abs().sum()) for g in one.values()) > 0
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-9, atol=1e-12, msg=name)


def test_evaluate_command_reproduces_training_test_errors_and_plots(tmp_path):
    path = write_config(tmp_path, epochs=1, test_file=data_file("solvent_xtb_train_20.xyz"))
    assert run_cli("train", path).returncode == 0
    _, metadata = load_model(str(tmp_path / "model.pt"))
    for key in ("elements", "grain_cutoff", "intra_cutoff", "grains", "grain_formulas", "units", "version",
                "validation_errors", "test_errors"):
        assert key in metadata, key
    assert len(metadata["training"]["config_sha256"]) == 64 and metadata["grains"] == "molecule"
    out, plot = tmp_path / "metrics.json", tmp_path / "parity.png"
    result = run_cli("evaluate", str(tmp_path / "model.pt"), data_file("solvent_xtb_train_20.xyz"),
                     "--plot", str(plot), "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(out.read_text())
    for key in ("forces_rmse", "forces_mae", "energy_rmse_mev_per_atom"):
        assert errors[key] == pytest.approx(metadata["test_errors"][key], rel=1e-5)
    assert plot.stat().st_size > 10000
    assert (tmp_path / "model_run" / "learning_curve.png").exists()
    missing = run_cli("evaluate", str(tmp_path / "model.pt"), str(tmp_path / "nothing.xyz"))
    assert missing.returncode != 0 and "data file not found" in missing.stderr


def strained(config, strain):
    """A copy of ``config`` with positions and cell deformed by (I + strain), graphs rebuilt."""
    import copy
    deformed = copy.deepcopy(config)
    matrix = torch.eye(3, dtype=torch.float64) + strain
    deformed.positions, deformed.cell = config.positions @ matrix, config.cell @ matrix
    return deformed


def test_model_stress_is_the_strain_derivative_of_its_energy():
    """predict(stress=True) is (1/V) dE/dstrain (positions and every periodic shift strained
    alike): checked against finite differences of the energy of strained boxes, for normal and
    shear components; the labels read from a dataset are in eV/Å^3."""
    from cgaa_openmm.model import CGAAModel
    from training.data import attach_graphs, collate, predict
    path = os.path.join(ROOT, "training", "datasets", "ecemc-boxes-heldout.xyz.xz")
    config = read_configs(path)[0]
    assert config.stress is not None and 1e-4 < float(config.stress.abs().max()) < 0.1  # eV/Å^3
    torch.manual_seed(0)
    model = CGAAModel([1, 6, 8], **dict(TINY_MODEL, grain_cutoff=5.0, pair_cutoff=3.5)).double()
    model.energy_scale = 3.0
    with torch.no_grad():
        model.pair.theta.normal_(0.0, 0.2)

    def energy_and_stress(c):
        attach_graphs([c], model.grain_cutoff, model.pair_cutoff)
        energy, _, stress = predict(model, collate([c], model.elements, torch.float64), stress=True)
        return energy.item(), stress[0]
    _, stress = energy_and_stress(config)
    volume = abs(float(torch.linalg.det(config.cell)))
    h = 1e-5
    for i, j in [(0, 0), (2, 2), (0, 1), (1, 2)]:
        step = torch.zeros(3, 3, dtype=torch.float64)
        step[i, j] = step[j, i] = h / 2 if i != j else h
        plus, minus = energy_and_stress(strained(config, step))[0], energy_and_stress(strained(config, -step))[0]
        numeric = (plus - minus) / (2 * h) / volume  # shear: eps_ij = eps_ji = h/2
        assert float(stress[i, j]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert float(stress.abs().max()) > 1e-4


def test_stress_term_of_the_loss(tmp_path):
    """With stress_weight, the loss gains stress_weight * the mean squared stress component error
    over the batch's labelled periodic configurations (clusters in the batch add nothing)."""
    from cgaa_openmm.model import CGAAModel
    from training.data import attach_graphs, collate, predict
    from training.train import batch_loss
    boxes = read_configs(os.path.join(ROOT, "training", "datasets", "ecemc-boxes-heldout.xyz.xz"))[:2]
    clusters = read_configs(data_file("solvent_xtb_train_20.xyz"))[:2]
    configs = boxes + clusters
    torch.manual_seed(0)
    model = CGAAModel([1, 6, 8], **dict(TINY_MODEL, grain_cutoff=5.0)).double()
    attach_graphs(configs, model.grain_cutoff, model.pair_cutoff)
    options = dict(energy_weight=1.0, forces_weight=10.0)
    n_forces = 3 * sum(len(c.numbers) for c in configs)
    plain = batch_loss(model, configs, model.elements, torch.float64, dict(options, stress_weight=0.0), 4, n_forces)
    weighted = batch_loss(model, configs, model.elements, torch.float64, dict(options, stress_weight=1e4), 4, n_forces)
    _, _, stress = predict(model, collate(boxes, model.elements, torch.float64), stress=True)
    expected = 1e4 * sum((stress[k] - boxes[k].stress).pow(2).mean().item() for k in range(2)) / 4
    assert (weighted - plain).item() == pytest.approx(expected, rel=1e-8)
    assert expected > 1e-2  # the term is not vanishingly small


def test_stage_two_switches_weights_and_learning_rate_and_exports_its_best(tmp_path):
    """With stage_two_epoch, the later epochs run at stage_two_lr (AMSGrad here), and the exported
    model is the best EMA model of stage two, not an earlier one."""
    path = write_config(tmp_path, epochs=4, stage_two_epoch=3, stage_two_lr=0.0004, stage_two_energy_weight=500.0,
                        amsgrad=True, lr=0.01)
    result = run_cli("train", path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stage two from epoch 3" in result.stdout
    rows = open(tmp_path / "model_run" / "metrics.csv").read().strip().splitlines()
    header = rows[0].split(",")
    lr = [float(row.split(",")[header.index("lr")]) for row in rows[1:]]
    assert lr[:2] == [0.01, 0.01] and lr[2:] == [0.0004, 0.0004]
    _, metadata = load_model(str(tmp_path / "model.pt"))
    forces = [float(row.split(",")[header.index("valid_forces_rmse")]) for row in rows[1:]]
    energies = [float(row.split(",")[header.index("valid_energy_rmse_mev_per_atom")]) for row in rows[1:]]
    scores = [e * 1e-3 * 500.0 ** 0.5 + f * 10.0 ** 0.5 for e, f in zip(energies, forces)]
    best = 2 + int(np.argmin(scores[2:]))
    assert metadata["validation_errors"]["forces_rmse"] == pytest.approx(forces[best], rel=1e-5)


def test_grain_force_term_is_the_error_of_each_grains_net_force(tmp_path):
    """``grain_force_weight`` adds w * <(sum over a grain of F_pred - F_ref)^2> over the grain
    net-force components of the batch, and its gradient reaches the weights."""
    from training.data import collate, predict
    from training.train import batch_loss, new_model, prepare
    config = load_config(write_config(tmp_path, grain_force_weight=0.0))
    data = prepare(config)
    model = new_model(data, torch.float64)
    batch = data["train"][:4]
    n_force, n_grain = 3 * sum(len(c.numbers) for c in batch), 3 * sum(c.n_grains for c in batch)
    plain = batch_loss(model, batch, data["elements"], torch.float64, config, 4, n_force, n_grain)
    weighted = batch_loss(model, batch, data["elements"], torch.float64, dict(config, grain_force_weight=7.0), 4,
                          n_force, n_grain)
    collated = collate(batch, data["elements"], torch.float64)
    _, forces = predict(model, collated)
    net = []
    for k, c in enumerate(batch):
        atoms = (collated["atom_config"] == k).nonzero()[:, 0]
        error = (forces[atoms] - collated["forces"][atoms]).detach().numpy()
        net += [error[c.grain.numpy() == g].sum(0) for g in range(c.n_grains)]
    assert sum(c.n_grains for c in batch) > len(batch)  # clusters of several molecules
    expected = 7.0 * np.square(net).sum() / n_grain
    assert float((weighted - plain).detach()) == pytest.approx(expected, rel=1e-8)
    gradient = torch.autograd.grad(weighted - plain, [p for p in model.parameters() if p.requires_grad],
                                   allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in gradient)


def test_options_added_later_leave_older_config_hashes_alone(tmp_path):
    """A checkpoint or model made before an option existed still matches its config (the option at
    its default), and setting the option changes the hash."""
    from training.config import ADDED_LATER, config_hash
    config = load_config(write_config(tmp_path))
    older = {k: v for k, v in config.items() if k not in ADDED_LATER}
    assert config_hash(config) == config_hash(older)
    assert config_hash(dict(config, grain_force_weight=1.0)) != config_hash(config)


def ase_written(frames, path, energy="energy_xtb", forces="forces_xtb"):
    """``frames`` as ``ase.io.write`` writes them after a calculator ran: the labels in the calculator
    (``energy=`` in the comment line, a ``forces`` column), none left under the project's keys."""
    from ase.calculators.singlepoint import SinglePointCalculator
    out = []
    for atoms in frames:
        copy = atoms.copy()
        e, f = copy.info.pop(energy), copy.arrays.pop(forces)
        copy.calc = SinglePointCalculator(copy, energy=e, forces=f)
        out.append(copy)
    write(path, out)
    return path


def test_ase_written_and_mace_labels_are_found_without_keys(tmp_path, small_frames, capsys):
    reference = read_configs(data_file("solvent_xtb_train_20.xyz"), "energy_xtb", "forces_xtb")[:3]
    assert "'energy_xtb' (info)" in capsys.readouterr().err
    path = ase_written(small_frames, str(tmp_path / "ase.xyz"))
    raw = read(path, index=":")
    assert "energy_xtb" not in raw[0].info and set(raw[0].calc.results) >= {"energy", "forces"}
    mace = [a.copy() for a in small_frames]
    for a in mace:
        a.info["REF_energy"], a.arrays["REF_forces"] = a.info.pop("energy_xtb"), a.arrays.pop("forces_xtb")
    write(str(tmp_path / "mace.xyz"), mace)
    for configs in (read_configs(path), read_configs(path, energy_key="energy", forces_key="forces"),
                    read_configs(str(tmp_path / "mace.xyz"))):
        assert [c.energy for c in configs] == [r.energy for r in reference]
        for c, r in zip(configs, reference):
            torch.testing.assert_close(c.forces, r.forces, rtol=0, atol=1e-12)
    err = capsys.readouterr().err
    assert "energy 'energy' (calculator results) in eV, forces 'forces' (calculator results) in eV/angstrom" in err
    assert "energy 'REF_energy' (info)" in err


def test_an_explicit_key_wins_and_no_labels_is_a_clear_error(tmp_path, small_frames):
    frames = [a.copy() for a in small_frames]
    path = ase_written(frames, str(tmp_path / "both.xyz"))
    both = read(path, index=":")
    for a in both:
        a.info["energy_xtb"] = a.calc.results["energy"] + 1.0       # a second, different energy label
    write(path, both)
    calc_energy = [c.energy for c in read_configs(path, energy_key="energy")]
    info_energy = [c.energy for c in read_configs(path, energy_key="energy_xtb")]
    np.testing.assert_allclose(np.array(info_energy) - calc_energy, 1.0)
    assert [c.energy for c in read_configs(path)] == info_energy      # the documented order: energy_xtb first
    bare = [a.copy() for a in small_frames]
    for a in bare:
        del a.info["energy_xtb"], a.arrays["forces_xtb"]
    write(str(tmp_path / "bare.xyz"), bare)
    with pytest.raises(DataError, match=r"no energy found under the usual names .*info keys \['Comp', 'Nmols'.*"
                                        r"--energy-key, --forces-key and --stress-key"):
        read_configs(str(tmp_path / "bare.xyz"))


def test_stress_in_ase_conventions_equals_tblites(tmp_path):
    """tblite's stress on a periodic box, written by ASE (Voigt, in the calculator results) and as a
    MACE-style virial, is read back as tblite's 3x3 stress."""
    from tblite.ase import TBLite
    atoms = read(os.path.join(ROOT, "training", "datasets", "ecemc-boxes-heldout.xyz.xz"), index=0)
    from ase import Atoms
    part = atoms[atoms.arrays["molID"] < atoms.arrays["molID"].min() + 3]   # three molecules, same cell
    box = Atoms(numbers=part.numbers, positions=part.positions, cell=part.cell, pbc=True)
    box.arrays["molID"] = part.arrays["molID"]
    box.calc = TBLite(method="GFN2-xTB", verbosity=0)
    stress = box.get_stress(voigt=False)
    energy, forces = box.get_potential_energy(), box.get_forces()
    write(str(tmp_path / "tblite.xyz"), box)
    assert "stress" in read(str(tmp_path / "tblite.xyz")).calc.results
    virial = box.copy()
    virial.calc = None
    virial.info.update(REF_energy=energy, REF_virial=(-stress * box.get_volume()).reshape(9))
    virial.arrays["REF_forces"] = forces
    write(str(tmp_path / "virial.xyz"), virial)
    for name in ("tblite.xyz", "virial.xyz"):
        config, = read_configs(str(tmp_path / name))
        np.testing.assert_allclose(config.stress.numpy(), stress, rtol=1e-9, atol=1e-12)
        assert config.energy == pytest.approx(energy, rel=1e-12)
    assert np.abs(stress).max() > 1e-4


def test_evaluate_and_train_on_an_ase_written_file_without_keys(tmp_path, small_frames):
    frames = [a for a in read(data_file("solvent_xtb_train_20.xyz"), index=":")]
    isolated = [a for a in frames if a.info.get("config_type") == "IsolatedAtom"]
    labelled = [a for a in frames if a.info.get("config_type") != "IsolatedAtom"]
    path = ase_written(labelled, str(tmp_path / "ase.xyz"))
    write(path, isolated + read(path, index=":"))                    # E0 entries first, as in the original
    keyed = run_cli("evaluate", "carbonates-xtb-fast", data_file("solvent_xtb_train_20.xyz"), "--energy-key",
                    "energy_xtb", "--forces-key", "forces_xtb", check=True)
    plain = run_cli("evaluate", "carbonates-xtb-fast", path, check=True)
    drop = ("data",)
    assert ({k: v for k, v in json.loads(plain.stdout).items() if k not in drop}
            == {k: v for k, v in json.loads(keyed.stdout).items() if k not in drop})
    assert "energy 'energy' (calculator results)" in plain.stderr
    runs = []
    for name, train_file in (("keyed", data_file("solvent_xtb_train_20.xyz")), ("plain", path)):
        config = write_config(tmp_path, f"{name}.yaml", epochs=1, train_file=train_file,
                              output=str(tmp_path / f"{name}.pt"), **({"energy_key": "energy_xtb",
                                                                       "forces_key": "forces_xtb"}
                                                                      if name == "keyed" else {}))
        run_cli("train", config, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        runs.append(load_model(str(tmp_path / f"{name}.pt"))[0].state_dict())
    for key in runs[0]:      # the same data: the same weights (to float32 summation order)
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=1e-5, atol=1e-6)


def test_an_ase_index_after_at_selects_frames_and_a_missing_file_is_named(tmp_path, small_frames):
    path = str(tmp_path / "frames.xyz.xz")
    write(path, small_frames)
    whole = read_configs(path, "energy_xtb", "forces_xtb")
    head = read_configs(path + "@:2", "energy_xtb", "forces_xtb")
    tail = read_configs(path + "@2:", "energy_xtb", "forces_xtb")
    assert len(head) == 2 and len(head) + len(tail) == len(whole) > 2
    assert [c.energy for c in head + tail] == [c.energy for c in whole]
    assert [c.energy for c in read_configs(path + "@-1", "energy_xtb", "forces_xtb")] == [whole[-1].energy]
    with pytest.raises(DataError, match="not found: .*missing.xyz@:2"):
        read_configs(str(tmp_path / "missing.xyz@:2"))
