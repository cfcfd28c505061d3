"""GFN2-xTB's own density of the EC/EMC 3:7 liquid: tblite NVT at several densities, the
molecular pressure P(rho), and where it crosses 1 bar. Resumable across sessions and machines.

    python benchmarks/xtb_liquid.py start [--ec 3 --emc 6 --model carbonates-xtb --start-ps 4]
    python benchmarks/xtb_liquid.py run --density 1.095 [--settle-ps 0.5 --production-ps 2] [--max-minutes 120]
    python benchmarks/xtb_liquid.py report

``start``: the start box, a model's liquid frame: ``--ec`` EC and ``--emc`` EMC molecules (3 + 6 is
3:7 by weight, 120 atoms, an 11.05 Å box at 1.095 g/mL) packed at 1.095 g/mL
(``example_systems/build_ecemc.py``), then ``--start-ps`` of Langevin NVT at 298 K with the model
through ASE (``training.calculator.CGAACalculator``, which takes cells between one and two cutoffs
wide), H at 3 Da, 2 fs. Its last frame is written to ``results/xtb_liquid/start.xyz`` (committed)
as label ``model-ecN-emcM``. 120 atoms cost GFN2-xTB a third of the 200 atoms of the held-out
boxes (about 4 s per step on two cores against 12), so that three densities fit in five hours.

``run``: Langevin NVT (ASE, 298 K, 1/ps, centre of mass fixed by ``FixCom``) of that box
with periodic GFN2-xTB (tblite 0.8.0, wavefunction carried from step to step),
hydrogen masses repartitioned (``--hydrogen-mass``, Da, from the bonded carbon) and ``--timestep``
2 fs, as the model NPT runs (benchmarks/hmr_timestep.py). The start is ``--start`` in ``--source``
(default: the ``start`` box) with every molecule moved rigidly to the density; the held-out
200-atom boxes work too (``--source training/datasets/ecemc-boxes-heldout.xyz.xz --start npt5-28``).
Every step records the potential energy, the temperature, and the pressure from
tblite's stress: the atomic virial pressure, and the molecular one (each molecule's internal
virial removed, rigid-molecule kinetic part sum_J M_J V_J^2 / 3V), which is what a barostat
moving whole molecules responds to. After ``--settle-ps`` the frames are production: their
pressures are block-averaged (``--blocks``) and their molecular centre-of-mass RDF summed.
After every ``--save-steps`` steps the whole run (positions, momenta, the random generator's
state, the series) is written atomically to ``results/xtb_liquid/rho-DENSITY/run.json``: commit
it, and the same command continues the run anywhere.

``report``: P(rho) of every run, a weighted linear fit and its 1-bar crossing rho*, written to
``results/xtb_liquid.json`` (``densities_g_per_mL``, ``pressure_kbar``, ``stderr_kbar``,
``density_at_1bar_g_per_mL``, ``ps_per_density``, the RDF of the run nearest 1.095 g/mL) and
``results/xtb_liquid.png``. Units: Å and nm (RDFs), fs and ps, K, kbar, g/mL, eV, Da.
"""
import argparse
import json
import os
import time

import numpy as np
from ase import Atoms, units
from ase.data import atomic_masses
from ase.io import read

from common import AVOGADRO, BAR_PER_EV_PER_A3, ROOT, machine, saved_run
from npt_density import write_atomic
from xtb_reference import virial_pressures, whole_molecules
from dispersion_tail import rigidly_scaled

HERE = os.path.dirname(os.path.abspath(__file__))
STATES = os.path.join(HERE, "results", "xtb_liquid")
#: The model frame the runs start from (``start``), and its label.
SOURCE = os.path.join(STATES, "start.xyz")
START = "model-ec3-emc6"
#: Where the runs of CGAA models (``--calculator MODEL``) and their reports live.
MODEL_RESULTS = os.path.join(HERE, "results", "model_liquid")
#: ``--calculator`` of the reference runs; any other is a CGAA model, run the same way.
XTB = "GFN2-xTB"
KBAR_PER_EV_PER_A3 = BAR_PER_EV_PER_A3 / 1e3
#: Settings a continued run must share with the run it continues.
RUN_KEYS = ("density_g_per_mL", "temperature_K", "timestep_fs", "hydrogen_mass_amu", "friction_per_ps",
            "settle_ps", "start", "seed", "bin_width_nm", "r_max_nm", "electronic_temperature_K")


def density_of(atoms) -> float:
    """g/mL of a box (element masses, not repartitioned ones)."""
    return float(atomic_masses[atoms.numbers].sum()) / AVOGADRO / (atoms.get_volume() * 1e-24)


def start_box(density: float, start: str = START, source: str = SOURCE):
    """The start box (Atoms with molID, whole molecules) moved rigidly to ``density`` (g/mL)."""
    atoms = next(a for a in read(source, index=":") if a.info.get("label_id") == start)
    positions = whole_molecules(atoms)
    scale = (density_of(atoms) / density) ** (1 / 3)
    moved, cell = rigidly_scaled(positions, np.array(atoms.cell), atoms.arrays["molID"], scale)
    box = Atoms(numbers=atoms.numbers, positions=moved, cell=cell, pbc=True)
    box.arrays["molID"] = atoms.arrays["molID"].copy()
    return box


def hmr_masses(atoms, hydrogen_mass: float) -> np.ndarray:
    """Masses (Da) with every H at ``hydrogen_mass``, the difference taken from its nearest heavy
    atom of the same molecule (the bonded one in these molecules)."""
    masses = atoms.get_masses().copy()
    if not hydrogen_mass:
        return masses
    molecule, positions = atoms.arrays["molID"], atoms.get_positions()
    for h in np.flatnonzero(atoms.numbers == 1):
        heavy = np.flatnonzero((molecule == molecule[h]) & (atoms.numbers != 1))
        partner = heavy[np.argmin(np.linalg.norm(positions[heavy] - positions[h], axis=1))]
        masses[partner] -= hydrogen_mass - masses[h]
        masses[h] = hydrogen_mass
    return masses


def molecular_kinetic(atoms, molecule: np.ndarray) -> float:
    """sum_J M_J V_J^2 (eV): twice the kinetic energy of the molecules' centres of mass."""
    masses, velocities = atoms.get_masses(), atoms.get_velocities()
    total = 0.0
    for m in np.unique(molecule):
        members = molecule == m
        momentum = (masses[members, None] * velocities[members]).sum(0)
        total += float(momentum @ momentum) / masses[members].sum()
    return total


def com_rdf_frame(positions: np.ndarray, molecule: np.ndarray, masses: np.ndarray, edge: float, edges: np.ndarray):
    """g(r) of the molecular centres of mass (element masses) in one frame of a cubic box of
    ``edge`` Å, on the bin ``edges`` (Å), which may reach past half the box: every periodic image
    of every pair within ``edges[-1]`` counts (a small box's first shell lies near its half-width)."""
    ids = np.unique(molecule)
    centres = np.array([np.average(positions[molecule == m], axis=0, weights=masses[molecule == m]) for m in ids])
    i, j = np.triu_indices(len(ids), 1)
    delta = centres[i] - centres[j]
    delta -= edge * np.round(delta / edge)
    reach = int(np.ceil(edges[-1] / edge))
    images = edge * np.array(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3)).reshape(3, -1).T
    distance = np.linalg.norm(delta[:, None, :] + images[None], axis=2).ravel()
    counts = np.histogram(distance, edges)[0]
    shells = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return counts / (len(i) / edge ** 3 * shells)


def make_start(args) -> Atoms:
    """Pack ``--ec`` EC and ``--emc`` EMC at ``--density``, run ``--start-ps`` of the model's NVT, and
    write the last frame to ``--source`` as label ``model-ecN-emcM`` (other labels there are kept)."""
    import sys
    import torch
    from ase.io import write
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from training.calculator import CGAACalculator
    sys.path.insert(0, os.path.join(ROOT, "example_systems"))
    from build_ecemc import molecule_templates, pack
    templates = molecule_templates()
    placed, edge = pack(templates, {"EC": args.ec, "EMC": args.emc}, args.density, 2.0, args.seed)
    atoms = Atoms(numbers=np.concatenate([templates[name].numbers for name, _ in placed]),
                  positions=np.vstack([xyz for _, xyz in placed]), cell=[edge] * 3, pbc=True)
    atoms.arrays["molID"] = np.repeat(np.arange(len(placed)), [len(xyz) for _, xyz in placed])
    atoms.set_masses(hmr_masses(atoms, 3.0))
    atoms.calc = CGAACalculator(args.model, dtype=torch.float32)
    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, args.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep=2 * units.fs, temperature_K=args.temperature, friction=10 / (1000 * units.fs),
                   fixcm=False, rng=rng)
    steps = round(500 * args.start_ps)
    for block in range(10):
        dyn.run(steps // 10)
        print(f"start: {(block + 1) * steps // 10} of {steps} steps, T {atoms.get_temperature():.0f} K, "
              f"E {atoms.get_potential_energy():.3f} eV", flush=True)
    label = f"model-ec{args.ec}-emc{args.emc}"
    frame = Atoms(numbers=atoms.numbers, positions=whole_molecules(atoms), cell=atoms.cell, pbc=True)
    frame.arrays["molID"] = atoms.arrays["molID"].copy()
    frame.info.update(label_id=label, model=os.path.basename(args.model), start_ps=args.start_ps,
                      temperature_K=args.temperature, density_g_per_mL=args.density, seed=args.seed)
    kept = [a for a in read(args.source, index=":") if a.info.get("label_id") != label] \
        if os.path.exists(args.source) else []
    os.makedirs(os.path.dirname(os.path.abspath(args.source)), exist_ok=True)
    write(args.source, kept + [frame], format="extxyz")
    print(f"wrote {label} ({len(frame)} atoms, {edge:.3f} Å box) to {args.source}")
    return frame


def labelled_frame(atoms, molecule: np.ndarray, step: int, density: float, source: str = XTB) -> Atoms:
    """The box now with its labels, as the training data holds them: ``energy_xtb`` (eV),
    ``forces_xtb`` (eV/Å), ``stress_xtb`` (eV/Å^3, ASE's sign, 3 x 3 flattened), ``molID``. A
    model's frames carry its own values as ``energy_model``, ``forces_model``, ``stress_model``
    instead, for ``cgaa-openmm label`` to add GFN2-xTB's beside them: the reference on the
    model's own liquid."""
    key = "xtb" if source == XTB else "model"
    frame = Atoms(numbers=atoms.numbers, positions=atoms.get_positions(), cell=atoms.cell, pbc=True)
    frame.arrays["molID"] = molecule.copy()
    frame.arrays[f"forces_{key}"] = atoms.get_forces()
    frame.info.update(label_id=f"{key}-nvt-{density:.3f}-{step:05d}", step=step, density_g_per_mL=density,
                      config_type=f"{key}-liquid-nvt", **{f"energy_{key}": atoms.get_potential_energy(),
                                                          f"stress_{key}": atoms.get_stress(voigt=False).ravel()})
    if source != XTB:
        frame.info["model"] = source
    return frame


def save_frames(path: str, new: list, step: int) -> None:
    """Rewrite ``path`` (extxyz, xz) with its frames and the ``new`` ones, made since the last save
    and up to ``step``. Frames of a run cut between this write and its state's (steps from the first
    new one on, or past ``step``) are dropped: the continued run makes them again."""
    from ase.io import write
    first = new[0].info["step"] if new else step + 1
    kept = [f for f in read(path, index=":") if f.info["step"] < first] if os.path.exists(path) else []
    if new or kept:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write(path + ".tmp.xz", kept + new, format="extxyz")
        os.replace(path + ".tmp.xz", path)


def calculator(name: str):
    """Periodic GFN2-xTB (tblite 0.8.0, electronic temperature 300 K), or the CGAA model ``name``
    (a shipped name or a model file; float32, training.calculator.CGAACalculator)."""
    if name == XTB:
        from tblite.ase import TBLite
        return TBLite(method="GFN2-xTB", charge=0.0, multiplicity=1, verbosity=0, accuracy=1.0,
                      electronic_temperature=300.0)
    import torch
    from training.calculator import CGAACalculator
    return CGAACalculator(name, dtype=torch.float32)


def run(args) -> dict:
    from ase.md.langevin import Langevin
    from ase.constraints import FixCom
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    settings = dict(density_g_per_mL=args.density, temperature_K=args.temperature, timestep_fs=args.timestep,
                    hydrogen_mass_amu=args.hydrogen_mass or None, friction_per_ps=args.friction,
                    settle_ps=args.settle_ps, start=args.start, seed=args.seed, bin_width_nm=args.bin_width,
                    r_max_nm=args.r_max,
                    electronic_temperature_K=300.0, calculator=args.calculator)
    path = os.path.join(args.states, f"rho-{args.density:.3f}", "run.json")
    atoms = start_box(args.density, args.start, args.source)
    molecule = atoms.arrays["molID"]
    element_masses = atoms.get_masses().copy()
    atoms.set_masses(hmr_masses(atoms, args.hydrogen_mass))
    rng = np.random.default_rng(args.seed)
    data = saved_run(path, settings, RUN_KEYS)
    if data is not None and data["settings"].get("calculator", XTB) != args.calculator:
        raise SystemExit(f"{path} holds a run of {data['settings'].get('calculator', XTB)}, not of {args.calculator}: "
                         f"choose another --states folder")
    if data is not None:
        atoms.set_positions(np.array(data["positions_A"]))
        atoms.set_momenta(np.array(data["momenta"]))
        rng.bit_generator.state = data["rng_state"]
    else:
        thermalize_momenta(atoms, args.temperature, rng=rng)
        Stationary(atoms)
        data = dict(settings=settings, step=0, series=dict(time_ps=[], pressure_molecular_kbar=[],
                    pressure_atomic_kbar=[], temperature_K=[], potential_eV=[]), s_per_step=[],
                    rdf_sum=None, rdf_frames=0)
    atoms.calc = calculator(args.calculator)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep=args.timestep * units.fs, temperature_K=args.temperature,
                   friction=args.friction / (1000 * units.fs), fixcm=False, rng=rng)
    frames_path = os.path.join(os.path.dirname(path), "frames.xyz.xz")
    pending = []
    edge = float(atoms.cell[0, 0])
    edges = np.arange(0.0, 10 * args.r_max + 1e-9, 10 * args.bin_width)
    total = round(1000 * (args.settle_ps + args.production_ps) / args.timestep)
    volume = atoms.get_volume()
    dof = 3 * len(atoms) - 3
    started = time.time()
    series = data["series"]
    while data["step"] < total:
        t0 = time.perf_counter()
        dyn.run(1)
        data["s_per_step"].append(round(time.perf_counter() - t0, 3))
        data["step"] += 1
        positions = atoms.get_positions()
        atomic, molecular = virial_pressures(positions, molecule, atoms.get_forces(), atoms.get_stress(voigt=False),
                                             volume)
        kinetic = atoms.get_kinetic_energy()
        series["time_ps"].append(round(data["step"] * args.timestep / 1000, 6))
        series["pressure_atomic_kbar"].append(round(atomic + 2 * kinetic / (3 * volume) * KBAR_PER_EV_PER_A3, 4))
        series["pressure_molecular_kbar"].append(round(
            molecular + molecular_kinetic(atoms, molecule) / (3 * volume) * KBAR_PER_EV_PER_A3, 4))
        series["temperature_K"].append(round(2 * kinetic / (dof * units.kB), 2))
        series["potential_eV"].append(round(atoms.get_potential_energy(), 5))
        if args.frame_every and data["step"] % args.frame_every == 0:
            pending.append(labelled_frame(atoms, molecule, data["step"], args.density, args.calculator))
        if series["time_ps"][-1] > args.settle_ps + 1e-9:
            g = com_rdf_frame(positions, molecule, element_masses, edge, edges)
            data["rdf_sum"] = (g if data["rdf_sum"] is None else np.array(data["rdf_sum"]) + g).tolist()
            data["rdf_frames"] += 1
        last = data["step"] == total or (args.max_minutes and time.time() - started > 60 * args.max_minutes)
        if data["step"] % args.save_steps == 0 or last:
            data.update(positions_A=positions.tolist(), momenta=atoms.get_momenta().tolist(),
                        rng_state=rng.bit_generator.state, rdf_r_nm=(0.05 * (edges[1:] + edges[:-1])).tolist())
            save_frames(frames_path, pending, data["step"])
            pending = []
            write_atomic(path, json.dumps(data, separators=(",", ":")))
            print(f"rho {args.density}: step {data['step']}/{total}, {series['time_ps'][-1]:.3f} ps, "
                  f"P_mol {series['pressure_molecular_kbar'][-1]:+.2f} kbar, T {series['temperature_K'][-1]:.0f} K, "
                  f"{np.median(data['s_per_step'][-args.save_steps:]):.1f} s/step", flush=True)
        if last:
            break
    return data


def block_mean(values, blocks: int):
    values = np.asarray(values, dtype=float)
    means = np.array([chunk.mean() for chunk in np.array_split(values, blocks)])
    return float(values.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def report(args) -> dict:
    runs = []
    for name in sorted(os.listdir(args.states)) if os.path.isdir(args.states) else []:
        path = os.path.join(args.states, name, "run.json")
        if not os.path.exists(path):
            continue
        with open(path) as file:
            data = json.load(file)
        t = np.array(data["series"]["time_ps"])
        production = t > data["settings"]["settle_ps"] + 1e-9
        if production.sum() < args.blocks:
            continue
        mol = block_mean(np.array(data["series"]["pressure_molecular_kbar"])[production], args.blocks)
        atomic = block_mean(np.array(data["series"]["pressure_atomic_kbar"])[production], args.blocks)
        runs.append(dict(density=data["settings"]["density_g_per_mL"], pressure=mol, atomic=atomic,
                         ps=float(t[production][-1] - data["settings"]["settle_ps"]),
                         temperature=float(np.mean(np.array(data["series"]["temperature_K"])[production])),
                         s_per_step=float(np.median(data["s_per_step"])), data=data))
    result = dict(densities_g_per_mL=[r["density"] for r in runs], pressure_kbar=[r["pressure"][0] for r in runs],
                  stderr_kbar=[r["pressure"][1] for r in runs],
                  atomic_pressure_kbar=[r["atomic"][0] for r in runs], ps_per_density=[r["ps"] for r in runs],
                  temperature_K=[r["temperature"] for r in runs], s_per_step=[r["s_per_step"] for r in runs],
                  density_at_1bar_g_per_mL=None, crossing=None, calculator=args.calculator, machine=machine(),
                  command="python benchmarks/xtb_liquid.py run --density RHO; python benchmarks/xtb_liquid.py report"
                  + ("" if args.calculator == XTB else f" (both with --calculator {args.calculator})"),
                  measured=time.strftime("%F %T"))
    own = {}
    for r in runs if args.calculator != XTB else []:
        path = os.path.join(args.states, f"rho-{r['density']:.3f}", "frames-gfn2.xyz.xz")
        if os.path.exists(path):
            settings = r["data"]["settings"]
            own[f"{r['density']:.3f}"] = reference_on_own_frames(
                path, round(1000 * settings["settle_ps"] / settings["timestep_fs"]))
    if own:
        result["gfn2_on_own_frames"] = own
    if len(runs) >= 2:
        rho, p = np.array(result["densities_g_per_mL"]), np.array(result["pressure_kbar"])
        weights = 1 / np.maximum(np.array(result["stderr_kbar"]), 1e-3)
        slope, intercept = np.polyfit(rho, p, 1, w=weights)
        crossing = (1e-3 - intercept) / slope
        result.update(fit_kbar=dict(slope_per_g_per_mL=float(slope), intercept=float(intercept)),
                      density_at_1bar_g_per_mL=float(crossing),
                      crossing="inside the bracket" if rho.min() <= crossing <= rho.max() else
                      "extrapolated: outside the bracket of densities run")
    if runs:
        nearest = min(runs, key=lambda r: abs(r["density"] - 1.095))["data"]
        if nearest["rdf_frames"]:
            result["rdf"] = {"all": [nearest["rdf_r_nm"], (np.array(nearest["rdf_sum"]) / nearest["rdf_frames"]).round(5)
                                     .tolist()]}
            result["rdf_density_g_per_mL"] = nearest["settings"]["density_g_per_mL"]
        plot(runs, result, os.path.splitext(args.output)[0] + ".png",
             model_results(args.model_results) if args.calculator == XTB else {})
    write_atomic(args.output, json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rdf", "machine")}, indent=1))
    return result


def reference_on_own_frames(path: str, settle_steps: int) -> dict:
    """GFN2-xTB against the model on the model's own liquid: the static molecular virial pressures
    (kbar; no kinetic part, the same for both) of the production frames in ``path``, a model run's
    ``frames.xyz.xz`` labelled by ``cgaa-openmm label`` (``rho-DENSITY/frames-gfn2.xyz.xz``), past
    ``settle_steps``: the mean model - GFN2 difference and its standard error."""
    model, reference = [], []
    for frame in read(path, index=":"):
        if frame.info["step"] <= settle_steps:
            continue
        molecule, positions, volume = frame.arrays["molID"], frame.get_positions(), frame.get_volume()
        for key, out in (("model", model), ("xtb", reference)):
            stress = np.asarray(frame.info[f"stress_{key}"], dtype=float).reshape(3, 3)
            out.append(virial_pressures(positions, molecule, frame.arrays[f"forces_{key}"], stress, volume)[1])
    difference = np.array(model) - np.array(reference)
    return dict(frames=len(difference), model_static_kbar=float(np.mean(model)),
                gfn2_static_kbar=float(np.mean(reference)), model_minus_gfn2_kbar=float(difference.mean()),
                stderr_kbar=float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else None)


def model_results(folder: str) -> dict:
    """The reports of the CGAA models' runs (``report --calculator MODEL``), by model name."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as file:
                found[name[:-5]] = json.load(file)
    return found


def plot(runs, result, path: str, models: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.errorbar(result["densities_g_per_mL"], result["pressure_kbar"], yerr=result["stderr_kbar"], fmt="o",
                  label="molecular pressure")
    left.axhline(0.0, color="grey", lw=0.6)
    left.axvline(1.095, color="k", ls="--", lw=0.8, label="experiment 1.095 g/mL")
    if result.get("fit_kbar"):
        rho = np.linspace(min(result["densities_g_per_mL"]) - 0.05, max(result["densities_g_per_mL"]) + 0.05, 20)
        left.plot(rho, result["fit_kbar"]["slope_per_g_per_mL"] * rho + result["fit_kbar"]["intercept"], lw=0.8,
                  label=f"fit: 1 bar at {result['density_at_1bar_g_per_mL']:.3f} g/mL")
    for name, model in models.items():
        left.errorbar(model["densities_g_per_mL"], model["pressure_kbar"], yerr=model["stderr_kbar"], fmt="s",
                      mfc="none", label=f"{name} (its own NVT)")
    left.set(xlabel="density (g/mL)", ylabel=f"P (kbar), {result['calculator']} NVT 298 K")
    left.legend(fontsize=7)
    for r in runs:
        s = r["data"]["series"]
        right.plot(s["time_ps"], s["pressure_molecular_kbar"], lw=0.6, label=f"{r['density']} g/mL")
    right.set(xlabel="time (ps)", ylabel="molecular pressure (kbar)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "run", "report"])
    parser.add_argument("--density", type=float, default=1.095, help="g/mL")
    parser.add_argument("--temperature", type=float, default=298.0, help="K")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--hydrogen-mass", type=float, default=3.0, help="Da (0: none)")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--settle-ps", type=float, default=0.5)
    parser.add_argument("--production-ps", type=float, default=2.0, help="the run ends here (can be raised)")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--bin-width", type=float, default=0.01, help="nm, RDF bins")
    parser.add_argument("--r-max", type=float, default=0.9, help="nm, RDF range (periodic images count)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--frame-every", type=int, default=10,
                        help="steps between frames kept in rho-DENSITY/frames.xyz.xz, with GFN2-xTB's labels (training "
                             "data) or a model's own values (to label: the reference on the model's liquid); 0: none")
    parser.add_argument("--max-minutes", type=float, help="stop (saved) after this wall time")
    parser.add_argument("--source", default=SOURCE, help="extxyz holding the start box")
    parser.add_argument("--ec", type=int, default=3, help="start: EC molecules")
    parser.add_argument("--emc", type=int, default=6, help="start: EMC molecules")
    parser.add_argument("--model", default="carbonates-xtb", help="start: the model whose liquid frame starts the runs")
    parser.add_argument("--start-ps", type=float, default=4.0, help="start: ps of the model's NVT")
    parser.add_argument("--start", default=START, help="label_id of the start box in --source")
    parser.add_argument("--calculator", default=XTB,
                        help=f"run, report: {XTB} (the reference), or a CGAA model (name or file) run the same way")
    parser.add_argument("--states", help="where rho-DENSITY/run.json live (default: results/xtb_liquid, and "
                                         "results/model_liquid/MODEL for a model)")
    parser.add_argument("--output", help="report: the JSON (default: results/xtb_liquid.json, "
                                         "results/model_liquid/MODEL.json for a model)")
    parser.add_argument("--model-results", default=MODEL_RESULTS, help="report: the models' reports to plot beside")
    args = parser.parse_args(argv)
    name = os.path.splitext(os.path.basename(args.calculator))[0]
    args.states = args.states or (STATES if args.calculator == XTB else os.path.join(MODEL_RESULTS, name))
    args.output = args.output or (os.path.join(HERE, "results", "xtb_liquid.json") if args.calculator == XTB
                                  else os.path.join(MODEL_RESULTS, name + ".json"))
    return {"start": make_start, "run": run, "report": report}[args.action](args)


if __name__ == "__main__":
    main()
