"""Helpers of the benchmark scripts: the fragment grains of the grain-size ablation, and the
equation-of-state benchmark (pressure by central difference, a run on a small periodic box)."""
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from ase.io import read

from cgaa_openmm.grains import hill_formula
from conftest import data_file

from accuracy import fragment_ids  # benchmarks/ is on pytest's pythonpath (setup.cfg)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each carbonate splits into its CO3 group and its alkyl parts.
EXPECTED = {"EC": ["CO3", "C2H4"], "PC": ["CO3", "C3H6"], "VC": ["CO3", "C2H2"],
            "DMC": ["CO3", "CH3", "CH3"], "EMC": ["CO3", "CH3", "C2H5"], "DEC": ["CO3", "C2H5", "C2H5"]}


def test_fragment_grains_split_every_carbonate_into_its_co3_group_and_alkyl_parts():
    frames = [a for a in read(data_file("solvent_xtb_train_50.xyz"), index=":")
              if a.info.get("config_type") != "IsolatedAtom"]
    seen = set()
    for atoms in frames:
        fragment = fragment_ids(atoms, atoms.arrays["molID"])
        got = Counter(hill_formula(atoms.numbers[fragment == f]) for f in set(fragment))
        want = Counter()
        for part in atoms.info["Comp"].split(":"):
            name, count = part.rstrip(")").split("(")
            seen.add(name)
            for formula in EXPECTED[name]:
                want[formula] += int(count)
        assert got == want, atoms.info["Comp"]
    assert seen == set(EXPECTED)


def test_eos_pressure_is_minus_the_volume_derivative():
    from common import BAR_PER_EV_PER_A3, pressure
    scales = [0.99, 1.0, 1.01]
    volume = np.array([[990.0, 1000.0, 1010.0], [1900.0, 2000.0, 2100.0]])
    energy = -0.002 * volume + 5.0                       # eV; dE/dV = -0.002 eV/Å^3
    np.testing.assert_allclose(pressure(energy, volume, scales), 0.002 * BAR_PER_EV_PER_A3)
    assert pressure(energy, volume, [0.98, 1.0, 1.02]) is None


@pytest.mark.slow
def test_eos_script_on_a_small_periodic_box(tmp_path):
    """Three molecules in a 12.5 Å box: xTB and the shipped model at three scales, pressures reported."""
    from build_ecemc import molecule_templates, pack, write_pdb
    from eos import main
    templates = molecule_templates()
    placed, edge = pack(templates, {"EC": 2, "EMC": 1}, density=0.24, min_distance=2.0, seed=0)
    pdb = str(tmp_path / "box.pdb")
    write_pdb(templates, placed, edge, pdb)
    main([pdb, pdb, "--model", "carbonates-xtb", "--frames", "1", "--scales", "0.99", "1.0", "1.01",
          "--workers", "1", "--output", str(tmp_path / "eos")])
    result = json.load(open(tmp_path / "eos" / "eos.json"))
    assert result["molecules"] == 3
    density = np.array(result["density_g_per_ml"][0])
    np.testing.assert_allclose(density * np.array([0.99, 1.0, 1.01]) ** 3, density[1], rtol=1e-6)
    e_xtb = np.array(result["xtb_energy_eV"][0])
    assert np.isfinite(e_xtb).all() and len(set(e_xtb.round(6))) == 3
    assert np.isfinite(result["xtb_pressure_bar"][0])
    assert np.isfinite(result["models"]["carbonates-xtb"]["pressure_bar"][0])
    assert (tmp_path / "eos" / "eos.png").exists()


def test_first_shell_pairs_are_whole_close_molecules():
    from dimers import first_shell_pairs
    example = os.path.join(ROOT, "example_systems", "ecemc.pdb")
    frames = first_shell_pairs(example, example, radius=5.0, per_kind=3, skip=0, seed=0)
    by_id = {a.info["label_id"]: a for a in frames}
    pairs = sorted({a.info["pair"] for a in frames})
    assert {by_id[f"{p}-d"].info["kind"] for p in pairs} == {"EC-EC", "EC-EMC", "EMC-EMC"}
    for p in pairs:
        d, a, b = (by_id[f"{p}-{part}"] for part in "dab")
        np.testing.assert_allclose(d.positions, np.vstack([a.positions, b.positions]))
        assert np.linalg.norm(b.positions.mean(0) - a.positions.mean(0)) < 5.0
        for mol in (a, b):   # whole: every atom within bonding reach of another of its molecule
            dist = np.linalg.norm(mol.positions[:, None] - mol.positions[None], axis=-1) + 9 * np.eye(len(mol))
            assert dist.min(1).max() < 1.7


def test_pressure_benchmark_agrees_with_evaluate(tmp_path):
    """benchmarks/pressure.py on labelled boxes: the reference's molecular pressure per density bin,
    and a model's atomic pressure error equal to what ``evaluate`` reports from the same stress."""
    import pressure
    from training.evaluate import evaluate_file
    data = os.path.join(ROOT, "training", "datasets", "ecemc-boxes-stress1.xyz.xz")
    pressure.main([data, "--model", "carbonates-xtb-fast", "--output", str(tmp_path)])
    results = json.load(open(tmp_path / "pressure.json"))
    assert sum(b["n"] for b in results["reference_bins"]) == 30
    assert (tmp_path / "pressure.png").stat().st_size > 10000
    errors = evaluate_file(os.path.join(ROOT, "cgaa_openmm", "models", "carbonates-xtb-fast.pt"), data)
    atomic = results["models"]["carbonates-xtb-fast"]["atomic"]
    assert abs(atomic["mean_kbar"] - errors["pressure_error_mean_kbar"]) < 1e-2  # float64 here, float32 there


@pytest.mark.slow
def test_pareto_on_the_smallest_box_with_a_tiny_model(tmp_path):
    """benchmarks/pareto.py end to end: a tiny CGAA config trained, tested, timed (molecule and atom
    grains) at 800 atoms, its graph time apart; the table, plot and targets written."""
    import yaml
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(
        train_file=data_file("solvent_xtb_train_20.xyz"), epochs=1, batch_size=5, grain_key="molID",
        model=dict(channels=8, lmax=1, embed_layers=1, interactions=1, n_radial=4, radial_hidden=16))))
    out = tmp_path / "results"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "pareto.py"), "--rows", "tiny",
                    "--config", f"tiny={config}", "--sizes", "800", "--quick", "--test-file",
                    data_file("solvent_xtb_train_20.xyz"), "--runs", str(tmp_path / "runs"),
                    "--output-dir", str(out)], check=True, cwd=ROOT)
    results = json.load(open(out / "pareto.json"))
    row = results["models"]["tiny"]
    clusters = [a for a in read(data_file("solvent_xtb_train_20.xyz"), index=":")
                if a.info.get("config_type") != "IsolatedAtom"]
    assert row["errors"]["n_configs"] == len(clusters) and np.isfinite(row["errors"]["forces_rmse"])
    for timing in (row["timings"]["800"], row["atom_grain_timings"]["800"]):
        assert timing["atoms"] == 800 and 0 < timing["graph_ms"] < timing["total_ms"]
        assert np.isclose(timing["model_ms"] + timing["graph_ms"], timing["total_ms"])
    assert row["errors"]["n_configs_max_force_above_10"] == sum(np.abs(a.arrays["forces_xtb"]).max() >= 10
                                                                for a in clusters)
    net = [a.arrays["forces_xtb"][a.arrays["molID"] == m].sum(0) for a in clusters for m in set(a.arrays["molID"])]
    assert np.isclose(row["errors"]["net_molecular_force_reference_rms"], np.sqrt(np.mean(np.square(net))))
    assert row["timings"]["800"]["parameters"] > 0
    assert np.isfinite(row["timings"]["800"]["energy_kj_mol"])
    assert "| tiny |" in (out / "pareto.md").read_text()
    assert (out / "pareto.png").stat().st_size > 5000
    assert [t["met"] for t in results["targets"]] == [None] * 6  # no shipped or MACE row measured
    # The flat records: one per model and size, the total including the graph.
    molecule, atom = results["rows"]
    assert molecule["model"] == "tiny" and molecule["grains"] == "molecule" and molecule["trained"]
    assert atom["model"] == "tiny (atom grains)" and atom["grains"] == "atom" and not atom["trained"]
    assert molecule["atoms"] == 800 and molecule["threads"] == 1 and molecule["train_configs"] == 200
    assert molecule["force_rmse_eV_per_A"] == row["errors"]["forces_rmse"] and atom["force_rmse_eV_per_A"] is None
    assert np.isclose(molecule["us_per_atom"], 1e3 * row["timings"]["800"]["total_ms"] / 800)
    assert np.isclose(molecule["us_per_atom"], molecule["model_us_per_atom"] + molecule["graph_us_per_atom"])


def small_box(tmp_path, counts=None, density=1.1):
    """A packed EC/EMC box (PDB with bonds) of ``counts`` molecules."""
    from build_ecemc import molecule_templates, pack, write_pdb
    templates = molecule_templates()
    placed, edge = pack(templates, counts or {"EC": 5, "EMC": 10}, density=density, min_distance=2.0, seed=0)
    pdb = str(tmp_path / "box.pdb")
    write_pdb(templates, placed, edge, pdb)
    return pdb, templates, placed, edge


def test_npt_density_run_continued_elsewhere_is_the_run_never_cut(tmp_path):
    """15 molecules packed at 1.1 g/mL, HMR at 2 fs on Reference: four chunks in one go, and two chunks
    then the run state copied to a new directory (another machine) and two more, end in the same
    state bit for bit; the series, RDFs and contacts cover the production frames."""
    import shutil
    from npt_density import main
    pdb, *_ = small_box(tmp_path)
    common = ["--input", pdb, "--model", "carbonates-xtb-fast", "--platform", "Reference", "--precision", "double",
              "--threads", "1", "--equilibration-ps", "0.004", "--frame-ps", "0.004", "--chunk-ps", "0.008",
              "--barostat-interval", "2", "--blocks", "2"]
    whole = main(common + ["--production-ps", "0.028", "--run-dir", str(tmp_path / "runs" / "whole"),
                           "--output", str(tmp_path / "whole.json")])
    main(common + ["--production-ps", "0.012", "--run-dir", str(tmp_path / "runs" / "cut"),
                   "--output", str(tmp_path / "cut.json")])
    shutil.copytree(tmp_path / "runs" / "cut", tmp_path / "elsewhere" / "cut")
    resumed = main(common + ["--production-ps", "0.028", "--run-dir", str(tmp_path / "elsewhere" / "cut"),
                             "--output", str(tmp_path / "resumed.json")])
    first = json.load(open(tmp_path / "runs" / "whole" / "run.json"))
    second = json.load(open(tmp_path / "elsewhere" / "cut" / "run.json"))
    assert first["step"] == second["step"] == 16
    assert first["state_xml"] == second["state_xml"]
    assert first["series"] == second["series"] and len(first["series"]["step"]) == 8
    assert len(set(first["series"]["density_g_per_mL"])) > 1            # the barostat moved the box
    assert whole["density_g_per_mL"] == resumed["density_g_per_mL"]
    assert whole["production_frames"] == 7 and whole["hydrogen_mass_amu"] == 3.0 and whole["timestep_fs"] == 2.0
    assert 1.0 < whole["density_g_per_mL"] < 1.2 and np.isfinite(whole["stderr_g_per_mL"])
    assert set(whole["closest_contacts_nm"]["min"]) >= {"H-H", "H-O", "O-O"}
    assert 0.15 < whole["closest_contacts_nm"]["min"]["H-O"] < 0.35
    rdf = first["rdf"]["all"]
    assert first["rdf_frames"] == 7 and max(rdf[1]) > 1.0 and rdf[0][-1] < 0.9
    report = json.load(open(tmp_path / "resumed.json"))
    assert report["experiment_g_per_mL"] == 1.095 and [r["name"] for r in report["runs"]] == ["cut"]
    assert (tmp_path / "resumed.png").exists()
    with pytest.raises(SystemExit, match="other settings"):
        main(common[:-2] + ["--blocks", "2", "--timestep", "1", "--production-ps", "0.028",
                            "--run-dir", str(tmp_path / "elsewhere" / "cut"), "--output", str(tmp_path / "x.json")])


def test_hmr_timestep_script_records_drift_and_equipartition(tmp_path):
    from hmr_timestep import main
    pdb, *_ = small_box(tmp_path)
    entry = main(["--input", pdb, "--model", "carbonates-xtb-fast", "--langevin-ps", "0.1", "--nve-ps", "0.1",
                  "--output", str(tmp_path / "hmr.json")])
    assert entry["nve_finite"] and np.isfinite(entry["drift_K_per_ns"]) and entry["hydrogen_mass_amu"] == 3.0
    assert 0.5 < entry["hydrogen_over_heavy"] < 2.0
    assert json.load(open(tmp_path / "hmr.json"))["entries"] == [entry]


def test_xtb_liquid_rdf_reaches_past_half_the_box():
    """The centre-of-mass RDF of a small box with every periodic image counted is, out to 0.9 of
    the edge, the RDF of the same box tiled 2 x 2 x 2 (where half the box is twice as far); an ideal
    gas gives g = 1 on average there."""
    from xtb_liquid import com_rdf_frame
    rng = np.random.default_rng(0)
    edge, n = 11.0, 9
    centres = rng.uniform(0, edge, (n, 3))
    positions = np.repeat(centres, 2, axis=0) + np.tile([[0.3, 0, 0], [-0.3, 0, 0]], (n, 1))
    molecule, masses = np.repeat(np.arange(n), 2), np.ones(2 * n)
    edges = np.arange(0.0, 0.9 * edge, 0.5)
    small = com_rdf_frame(positions, molecule, masses, edge, edges)
    shifts = edge * np.array(list(np.ndindex(2, 2, 2)))
    tiled = np.concatenate([positions + shift for shift in shifts])
    big = com_rdf_frame(tiled, np.concatenate([molecule + n * k for k in range(8)]), np.ones(len(tiled)), 2 * edge, edges)
    np.testing.assert_allclose(small, big * (8 * n - 1) / (8 * (n - 1)), rtol=1e-12)   # pair densities differ
    gas = np.mean([com_rdf_frame(rng.uniform(0, edge, (2 * n, 3)), molecule, masses, edge, edges)
                   for _ in range(300)], axis=0)
    assert abs(gas[edges[1:] > 3].mean() - 1.0) < 0.05


def test_xtb_liquid_start_is_a_model_frame_of_whole_molecules_at_the_density(tmp_path):
    """``start``: 2 EC + 1 EMC at 1.0 g/mL (a 7.8 Å box, between one and two cutoffs of the model),
    a few fs of the model's NVT, written as its label beside the other labels of the file, molecules
    whole, at the density; ``run`` starts from it."""
    from ase import Atoms
    from ase.io import read, write
    from xtb_liquid import density_of, main
    source = str(tmp_path / "start.xyz")
    write(source, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"label_id": "other"}))
    frame = main(["start", "--ec", "2", "--emc", "1", "--density", "1.0", "--start-ps", "0.02",
                  "--model", "carbonates-xtb-fast", "--source", source])
    frames = read(source, index=":")
    assert [a.info["label_id"] for a in frames] == ["other", "model-ec2-emc1"] and len(frames[1]) == 35
    assert density_of(frames[1]) == pytest.approx(1.0, rel=1e-6)
    assert (frames[1].arrays["molID"] == frame.arrays["molID"]).all()
    for m in range(3):
        xyz = frames[1].positions[frames[1].arrays["molID"] == m]
        assert np.linalg.norm(xyz - xyz.mean(0), axis=1).max() < 4.0          # whole, not split by the box
    data = main(["run", "--density", "1.0", "--production-ps", "0.002", "--settle-ps", "0.0", "--source", source,
                 "--start", "model-ec2-emc1", "--states", str(tmp_path / "states"), "--save-steps", "1"])
    assert data["step"] == 1 and np.isfinite(data["series"]["pressure_molecular_kbar"]).all()
    # a model runs the same NVT (--calculator), in a folder of its own; its frames carry its own
    # values under model keys (GFN2-xTB's are for `cgaa-openmm label` to add), never as xtb labels
    model = main(["run", "--density", "1.0", "--production-ps", "0.004", "--settle-ps", "0.0", "--source", source,
                  "--start", "model-ec2-emc1", "--states", str(tmp_path / "model"), "--save-steps", "1",
                  "--calculator", "carbonates-xtb-fast", "--frame-every", "1"])
    assert model["step"] == 2 and model["settings"]["calculator"] == "carbonates-xtb-fast"
    assert np.isfinite(model["series"]["pressure_molecular_kbar"]).all()
    own = read(str(tmp_path / "model" / "rho-1.000" / "frames.xyz.xz"), index=":")
    assert [f.info["step"] for f in own] == [1, 2] and own[0].info["model"] == "carbonates-xtb-fast"
    assert [f.info["energy_model"] for f in own] == pytest.approx(model["series"]["potential_eV"], abs=1e-5)
    assert "energy_xtb" not in own[0].info and "forces_xtb" not in own[0].arrays
    assert own[0].arrays["forces_model"].shape == (35, 3) and own[0].info["stress_model"].shape == (9,)
    with pytest.raises(SystemExit, match="holds a run of GFN2-xTB, not of carbonates-xtb-fast"):
        main(["run", "--density", "1.0", "--production-ps", "0.004", "--settle-ps", "0.0", "--source", source,
              "--start", "model-ec2-emc1", "--states", str(tmp_path / "states"), "--calculator", "carbonates-xtb-fast"])


def test_xtb_liquid_script_continues_its_run_and_reports_a_crossing(tmp_path):
    """Two small boxes (2 EC + 1 EMC) at two densities, GFN2-xTB NVT for a few steps, one continued:
    pressures finite, the series continued, labelled frames kept once each (a frame written by a
    run cut before its state was saved is made again), a 1-bar density from the fit."""
    from ase import Atoms
    from ase.io import read, write
    from xtb_liquid import main
    _, templates, placed, edge = small_box(tmp_path, {"EC": 2, "EMC": 1}, density=1.0)
    numbers = np.concatenate([templates[name].numbers for name, _ in placed])
    atoms = Atoms(numbers=numbers, positions=np.concatenate([xyz for _, xyz in placed]), cell=[edge] * 3, pbc=True)
    atoms.arrays["molID"] = np.concatenate([[k] * len(xyz) for k, (_, xyz) in enumerate(placed)])
    atoms.info["label_id"] = "small"
    write(tmp_path / "small.xyz", atoms)
    common = ["--source", str(tmp_path / "small.xyz"), "--start", "small", "--states", str(tmp_path / "states"),
              "--settle-ps", "0.002", "--save-steps", "2", "--blocks", "2", "--bin-width", "0.05"]
    main(["run", "--density", "1.0", "--production-ps", "0.004", "--frame-every", "1"] + common)
    frames_path = tmp_path / "states" / "rho-1.000" / "frames.xyz.xz"
    stale = read(str(frames_path), index=":")
    stale.append(stale[-1].copy())
    stale[-1].info.update(step=4, energy_xtb=0.0)   # as if a run had written step 4's frame, then been cut
    write(str(frames_path), stale, format="extxyz")
    continued = main(["run", "--density", "1.0", "--production-ps", "0.006", "--frame-every", "1"] + common)
    assert continued["step"] == 4 and len(continued["series"]["time_ps"]) == 4
    assert continued["series"]["time_ps"] == [0.002, 0.004, 0.006, 0.008]
    assert continued["rdf_frames"] == 3
    frames = read(str(frames_path), index=":")
    assert [f.info["step"] for f in frames] == [1, 2, 3, 4]
    assert [f.info["energy_xtb"] for f in frames] == pytest.approx(continued["series"]["potential_eV"], abs=1e-5)
    assert frames[0].arrays["forces_xtb"].shape == (len(frames[0]), 3) and frames[0].info["stress_xtb"].shape == (9,)
    main(["run", "--density", "1.2", "--production-ps", "0.006"] + common)
    result = main(["report", "--output", str(tmp_path / "xtb_liquid.json")] + common[4:6] + ["--blocks", "2"])
    assert result["densities_g_per_mL"] == [1.0, 1.2]
    assert np.isfinite(result["pressure_kbar"]).all() and np.isfinite(result["density_at_1bar_g_per_mL"])
    assert result["ps_per_density"] == [pytest.approx(0.006), pytest.approx(0.006)]


def test_rdx_results_evaluate_every_model_on_the_held_out_sets(tmp_path):
    """benchmarks/rdx.py with an untrained RDX model on a held-out set of two labelled cells: the
    errors are evaluate_file's, a missing set is null, rows of other models are kept, and the
    lattice keys are the GFN2 relaxation's and experiment's."""
    import torch
    import rdx
    from cgaa_openmm.model import CGAAModel
    from cgaa_openmm.modelfile import save_model
    from training.evaluate import evaluate_file
    from ase.io import write
    torch.manual_seed(0)
    model = CGAAModel([1, 6, 7, 8], [-10.0, -48.0, -60.0, -100.0], channels=8, lmax=1, embed_layers=1,
                      interactions=1, grain_cutoff=6.0).eval()
    save_model(str(tmp_path / "tiny.pt"), model, {"grains": "molecule"})
    write(str(tmp_path / "crystal.xyz"), read(os.path.join(ROOT, "training", "datasets", "rdx-md-round1.xyz.xz"), ":2"))
    output = str(tmp_path / "rdx.json")
    with open(output, "w") as file:
        json.dump({"models": {"other.pt": {"crystal": None, "disordered": None}}}, file)
    held_out = {"crystal": str(tmp_path / "crystal.xyz"), "disordered": str(tmp_path / "missing.xyz")}
    original = rdx.HELD_OUT
    rdx.HELD_OUT = held_out
    try:
        results = rdx.main(["--model", str(tmp_path / "tiny.pt"), "--output", output])
    finally:
        rdx.HELD_OUT = original
    expected = evaluate_file(str(tmp_path / "tiny.pt"), held_out["crystal"])
    assert results["force_rmse_crystal"] == pytest.approx(expected["forces_rmse"]) and expected["n_configs"] == 2
    assert results["force_rmse_disordered"] is None and set(results["models"]) == {"other.pt", "tiny.pt"}
    assert results["lattice_gfn2_A"] == pytest.approx([12.986, 11.011, 10.669], abs=1e-3)
    assert results["lattice_experiment_A"] == [13.182, 11.574, 10.709] and results["lattice_model_A"] is None
    assert json.load(open(output)) == results
    rdx.HELD_OUT = held_out
    try:
        relaxed = rdx.main(["--model", str(tmp_path / "tiny.pt"), "--output", output, "--relax",
                            "--relax-evaluations", "3"])["models"]["tiny.pt"]["relaxed"]
        kept = rdx.main(["--model", str(tmp_path / "tiny.pt"), "--output", output])["models"]["tiny.pt"]["relaxed"]
    finally:
        rdx.HELD_OUT = original
    assert relaxed == kept and 3 <= relaxed["evaluations"] <= 5 and len(relaxed["cell_A"]) == 3   # L-BFGS-B may overrun by one
    assert os.path.exists(tmp_path / "rdx_relaxed" / "tiny.json") and os.path.exists(tmp_path / "rdx_relaxed" / "tiny.pdb")


def test_the_reference_on_a_models_own_frames_is_the_static_molecular_pressure_difference(tmp_path):
    """xtb_liquid.reference_on_own_frames: frames past the settling steps only; the forces' internal
    virial cancels in the difference, so a GFN2 stress that is the model's minus s * identity
    (eV/Å^3, ASE's sign) gives model - GFN2 = -s in pressure units."""
    from ase import Atoms
    from ase.io import write
    from common import BAR_PER_EV_PER_A3
    from xtb_liquid import reference_on_own_frames
    rng = np.random.default_rng(4)
    frames = []
    for step, shift in ((50, 9.0), (300, 1e-4), (350, 3e-4)):
        atoms = Atoms("H4", positions=rng.normal(0, 1, (4, 3)) + 3.0, cell=[8.0] * 3, pbc=True)
        atoms.arrays["molID"] = np.array([0, 0, 1, 1])
        forces = rng.normal(0, 1, (4, 3))
        atoms.arrays["forces_model"], atoms.arrays["forces_xtb"] = forces, forces.copy()
        stress = rng.normal(0, 1e-3, (3, 3))
        stress = stress + stress.T
        atoms.info.update(step=step, stress_model=stress.ravel(), stress_xtb=(stress - shift * np.eye(3)).ravel())
        frames.append(atoms)
    write(tmp_path / "frames-gfn2.xyz.xz", frames, format="extxyz")
    result = reference_on_own_frames(str(tmp_path / "frames-gfn2.xyz.xz"), settle_steps=250)
    assert result["frames"] == 2
    assert result["model_minus_gfn2_kbar"] == pytest.approx(-2e-4 * BAR_PER_EV_PER_A3 / 1e3, rel=1e-6)
    assert result["stderr_kbar"] == pytest.approx(1e-4 * BAR_PER_EV_PER_A3 / 1e3, rel=1e-6)
