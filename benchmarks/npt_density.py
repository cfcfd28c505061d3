"""NPT density of the EC/EMC 3:7 liquid with a shipped model, resumable across sessions and machines.

    python benchmarks/npt_density.py [--model carbonates-xtb] [--correction experiment] [--equilibration-ps 20]
        [--production-ps 100] [--timestep 2 --hydrogen-mass 3] [--threads 2] [--max-minutes 150]

NPT (Langevin middle, Monte Carlo barostat moving molecules whole) of the bundled 800-atom EC:EMC
3:7-by-weight box (``example_systems/ecemc.pdb``, 20 EC + 40 EMC) at 298 K and 1 bar, one grain per
molecule, with hydrogen mass repartitioning (density is a static property: masses do not change it).
``--correction`` adds the model's opt-in density correction (``createSystem(densityCorrection=...)``,
:mod:`cgaa_openmm.correction`); its run lives in ``results/npt/MODEL-CORRECTION``.

The run advances in chunks of ``--chunk-ps``. Each chunk starts a fresh ``Context`` from the saved
``State`` with its random seeds set from the step, so a run cut anywhere and continued (on this
machine or another) follows the same steps as one never cut. After each chunk the whole run is
written atomically to ``RUN/run.json``: its settings, the OpenMM ``State`` XML (positions,
velocities, box), the series (time, density, energies, temperature every ``--frame-ps``), the
centre-of-mass RDFs and closest intermolecular contacts summed over the production frames, and
the seconds per step. That file (~0.3 MB) is the portable state to commit: no trajectory is kept.
Run the same command again to continue; ``--max-minutes`` stops after the chunk that passes it.

Writes ``--output`` (default ``benchmarks/results/npt_density.json``): one entry per run (model and
correction) under ``runs``, with the block-averaged density and standard error of the production
frames, and the experimental and (from ``benchmarks/results/xtb_liquid.json``, when present)
GFN2-xTB densities; and a plot beside it (density against time of every run, RDFs).
Units: ps, fs, K, bar, g/mL, nm, Da.
"""
import argparse
import json
import os
import time
from itertools import combinations_with_replacement

import mdtraj
import numpy as np
import openmm
from openmm import app, unit
from scipy.spatial import cKDTree

from common import ROOT, machine, saved_run

from cgaa_openmm import CGAAPotential
from cgaa_openmm.analysis import block_average, molecule_centres
from cgaa_openmm.simulate import get_platform, make_barostat, make_integrator, read_structure

HERE = os.path.dirname(os.path.abspath(__file__))
#: EC:EMC 3:7 by weight at 298 K (g/mL).
EXPERIMENT_G_PER_ML = 1.095
#: g/mL per (Da / nm^3).
G_PER_ML_PER_DA_NM3 = (1.0 * unit.dalton / unit.nanometer ** 3 / unit.AVOGADRO_CONSTANT_NA
                       ).value_in_unit(unit.gram / unit.milliliter)
#: Settings a continued run must share with the run it continues.
RUN_KEYS = ("input", "model", "correction", "temperature_K", "pressure_bar", "timestep_fs", "hydrogen_mass_amu",
            "friction_per_ps", "barostat_interval", "frame_ps", "chunk_ps", "equilibration_ps", "seed",
            "r_max_nm", "bin_width_nm", "platform", "precision")
#: Element pairs whose closest intermolecular distance is reported.
CONTACT_PAIRS = ("H-H", "H-O", "O-O", "C-O", "C-H", "C-C")
#: nm: contacts are searched within this distance.
CONTACT_SEARCH = 0.35


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader sees the old
    file or the new one, never a part."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as file:
        file.write(text)
    os.replace(path + ".tmp", path)


def build_system(settings: dict, topology: app.Topology, positions) -> openmm.System:
    """The model's system (HMR masses, grain bonds) with the barostat."""
    potential = CGAAPotential.load(settings["model"])
    system = potential.createSystem(topology, precision=settings["precision"],
                                    hydrogenMass=settings["hydrogen_mass_amu"], positions=positions,
                                    densityCorrection=settings["correction"])
    system.addForce(make_barostat("isotropic", settings["pressure_bar"], settings["temperature_K"],
                                  settings["barostat_interval"]))
    return system


def com_rdf(traj: mdtraj.Trajectory, r_max: float, bin_width: float) -> dict:
    """g(r) of molecular centres of mass for every pair of residue names and all (bin centres in nm)."""
    centres = molecule_centres(traj)
    names = sorted({residue.name for residue in centres.topology.residues})
    selections = [(f"{a}-{b}", f"resname {a}", f"resname {b}") for a, b in combinations_with_replacement(names, 2)]
    selections.append(("all", "all", "all"))
    rdfs = {}
    for label, first, second in selections:
        pairs = centres.topology.select_pairs(first, second)
        r, g = mdtraj.compute_rdf(centres, pairs, r_range=(0.0, r_max), bin_width=bin_width)
        rdfs[label] = (r, g)
    return rdfs


def closest_contacts(xyz: np.ndarray, box: np.ndarray, molecule: np.ndarray, symbols: np.ndarray) -> dict:
    """Shortest distance (nm) between atoms of different molecules, by element pair, in one frame
    of an orthorhombic box (edge lengths ``box``)."""
    tree = cKDTree(np.mod(xyz, box), boxsize=box)
    pairs = tree.query_pairs(CONTACT_SEARCH, output_type="ndarray")
    pairs = pairs[molecule[pairs[:, 0]] != molecule[pairs[:, 1]]]
    delta = xyz[pairs[:, 0]] - xyz[pairs[:, 1]]
    distance = np.linalg.norm(delta - box * np.round(delta / box), axis=1)
    kinds = np.array(["-".join(sorted(p)) for p in zip(symbols[pairs[:, 0]], symbols[pairs[:, 1]])])
    return {kind: float(distance[kinds == kind].min()) for kind in CONTACT_PAIRS if (kinds == kind).any()}


class Run:
    """The state of one NPT run, as held in ``run.json``: settings, OpenMM state XML, the series,
    and sums over production frames (RDFs, contacts)."""

    def __init__(self, path: str, settings: dict):
        self.path = path
        saved = saved_run(path, settings, RUN_KEYS)
        if saved is not None:
            self.data = saved
        else:
            self.data = dict(settings=settings, state_xml=None, step=0, series=dict(
                step=[], time_ps=[], density_g_per_mL=[], potential_kJ_per_mol=[], kinetic_kJ_per_mol=[],
                temperature_K=[]), rdf=None, rdf_frames=0, contacts_min_nm={}, contacts_frame_min_sum_nm={},
                contacts_frames=0, chunk_s_per_step=[], threads=[])

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, separators=(",", ":")))

    def add_rdf(self, rdfs: dict, frames: int) -> None:
        """Fold the RDFs of ``frames`` more production frames into the running frame-weighted mean."""
        old, n = self.data["rdf"], self.data["rdf_frames"]
        if old is None:
            old = {label: [r.tolist(), np.zeros_like(g).tolist()] for label, (r, g) in rdfs.items()}
        for label, (r, g) in rdfs.items():
            mean = (np.asarray(old[label][1]) * n + g * frames) / (n + frames)
            old[label] = [np.round(r, 6).tolist(), np.round(mean, 6).tolist()]
        self.data["rdf"], self.data["rdf_frames"] = old, n + frames

    def add_contacts(self, contacts: list) -> None:
        lows, sums = self.data["contacts_min_nm"], self.data["contacts_frame_min_sum_nm"]
        for frame in contacts:
            for kind, d in frame.items():
                lows[kind] = min(lows.get(kind, np.inf), d)
                sums[kind] = sums.get(kind, 0.0) + d
        self.data["contacts_frames"] += len(contacts)


def run_chunk(run: Run, system: openmm.System, topology: app.Topology, positions, args, masses: np.ndarray,
              symbols: np.ndarray, molecule: np.ndarray) -> None:
    """Advance ``run`` by one chunk (or to the end of the run) and save it."""
    settings = run.data["settings"]
    dt = settings["timestep_fs"]
    frame_steps = max(1, round(1000 * settings["frame_ps"] / dt))
    chunk_steps = frame_steps * max(1, round(settings["chunk_ps"] / settings["frame_ps"]))
    total = round(1000 * (settings["equilibration_ps"] + args.production_ps) / dt / frame_steps) * frame_steps
    step = run.data["step"]
    steps = min(chunk_steps, total - step)
    integrator = make_integrator("NPT", settings["temperature_K"], dt, settings["friction_per_ps"])
    integrator.setRandomNumberSeed(settings["seed"] + step)
    barostat = next(f for f in system.getForces() if isinstance(f, openmm.MonteCarloBarostat))
    barostat.setRandomNumberSeed(settings["seed"] + step)
    platform, properties = get_platform(settings["platform"], args.threads)
    context = openmm.Context(system, integrator, platform, properties)
    if run.data["state_xml"]:
        context.setState(openmm.XmlSerializer.deserialize(run.data["state_xml"]))
    else:
        context.setPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
        context.setPositions(positions)
        context.setVelocitiesToTemperature(settings["temperature_K"] * unit.kelvin, settings["seed"])
    mass = masses.sum()
    series = run.data["series"]
    frames, boxes, contacts = [], [], []
    t0 = time.perf_counter()
    for _ in range(steps // frame_steps):
        integrator.step(frame_steps)
        step += frame_steps
        state = context.getState(getEnergy=True, getPositions=True)
        box = np.diag(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        dof = 3 * system.getNumParticles() - 3     # the CMMotionRemover takes 3
        series["step"].append(step)
        series["time_ps"].append(round(step * dt / 1000, 6))
        series["density_g_per_mL"].append(round(mass / np.prod(box) * G_PER_ML_PER_DA_NM3, 6))
        series["potential_kJ_per_mol"].append(round(state.getPotentialEnergy().value_in_unit(
            unit.kilojoule_per_mole), 3))
        series["kinetic_kJ_per_mol"].append(round(kinetic, 3))
        series["temperature_K"].append(round(2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin)), 3))
        if step * dt / 1000 > settings["equilibration_ps"] + 1e-9:
            xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            frames.append(xyz)
            boxes.append(box)
            contacts.append(closest_contacts(xyz, box, molecule, symbols))
    seconds = time.perf_counter() - t0
    run.data["chunk_s_per_step"].append(round(seconds / steps, 5))
    run.data["threads"].append(args.threads)
    if frames:
        traj = mdtraj.Trajectory(np.array(frames), mdtraj.Topology.from_openmm(topology),
                                 unitcell_lengths=np.array(boxes), unitcell_angles=np.full((len(boxes), 3), 90.0))
        run.add_rdf(com_rdf(traj, settings["r_max_nm"], settings["bin_width_nm"]), len(frames))
        run.add_contacts(contacts)
    state = context.getState(getPositions=True, getVelocities=True, getParameters=True)
    run.data["state_xml"] = openmm.XmlSerializer.serialize(state)
    run.data["step"] = step
    run.save()
    del context, integrator


def summary(run: Run, blocks: int) -> dict:
    """The run's entry in ``npt_density.json``."""
    settings, series = run.data["settings"], run.data["series"]
    t = np.array(series["time_ps"])
    rho = np.array(series["density_g_per_mL"])
    production = t > settings["equilibration_ps"] + 1e-9
    entry = dict(model=settings["model"], correction=settings["correction"], timestep_fs=settings["timestep_fs"],
                 hydrogen_mass_amu=settings["hydrogen_mass_amu"], temperature_K=settings["temperature_K"],
                 pressure_bar=settings["pressure_bar"], equilibration_ps=settings["equilibration_ps"],
                 simulated_ps=float(t[-1]) if len(t) else 0.0,
                 production_ps=float(t[production][-1] - settings["equilibration_ps"]) if production.any() else 0.0,
                 production_frames=int(production.sum()), start_density_g_per_mL=float(rho[0]) if len(rho) else None,
                 density_g_per_mL=None, stderr_g_per_mL=None, blocks=blocks,
                 s_per_step=float(np.median(run.data["chunk_s_per_step"])) if run.data["chunk_s_per_step"] else None,
                 threads=sorted(set(run.data["threads"])), platform=settings["platform"],
                 run_state=os.path.relpath(run.path, ROOT))
    if production.sum() >= blocks:
        entry["density_g_per_mL"], entry["stderr_g_per_mL"] = block_average(rho[production], blocks)
        entry["relative_to_experiment"] = entry["density_g_per_mL"] / EXPERIMENT_G_PER_ML - 1.0
        entry["temperature_mean_K"] = float(np.mean(np.array(series["temperature_K"])[production]))
    if run.data["rdf"]:
        entry["rdf_peaks_nm"] = {label: float(r[int(np.argmax(g))]) for label, (r, g) in run.data["rdf"].items()}
    if run.data["contacts_frames"]:
        n = run.data["contacts_frames"]
        entry["closest_contacts_nm"] = dict(min=run.data["contacts_min_nm"], frame_min_mean={
            k: v / n for k, v in run.data["contacts_frame_min_sum_nm"].items()})
    return entry


def reference_density() -> dict:
    """GFN2-xTB's own density and its RDFs, from ``results/xtb_liquid.json`` (issue 30 step 3), if made."""
    path = os.path.join(HERE, "results", "xtb_liquid.json")
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def plot(runs: dict, reference: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        series = run.data["series"]
        line, = left.plot(series["time_ps"], series["density_g_per_mL"], lw=0.8, label=label)
        if run.data["rdf"]:
            r, g = run.data["rdf"]["all"]
            right.plot(10 * np.array(r), g, lw=1.2, color=line.get_color(), label=f"{label}, all molecules")
    left.axhline(EXPERIMENT_G_PER_ML, color="k", ls="--", lw=0.8, label=f"experiment {EXPERIMENT_G_PER_ML}")
    if reference.get("density_at_1bar_g_per_mL"):
        left.axhline(reference["density_at_1bar_g_per_mL"], color="tab:red", ls=":", lw=0.8, label="GFN2-xTB ρ*")
    if reference.get("rdf"):
        r, g = reference["rdf"]["all"]
        right.plot(10 * np.array(r), g, lw=1.2, ls="--", color="k", label="GFN2-xTB NVT frames")
    left.set(xlabel="time (ps)", ylabel="density (g/mL)")
    left.legend(fontsize=7)
    right.axhline(1.0, color="grey", lw=0.5, ls=":")
    right.set(xlabel="r (Å)", ylabel="g(r), molecular centres of mass")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(output: str, blocks: int, states: str) -> dict:
    """Rewrite ``output`` (and its plot) from every run state (``NAME/run.json``) under ``states``."""
    runs = {}
    for name in sorted(os.listdir(states)) if os.path.isdir(states) else []:
        path = os.path.join(states, name, "run.json")
        if os.path.exists(path):
            with open(path) as file:
                runs[name] = Run(path, json.load(file)["settings"])
    reference = reference_density()
    result = dict(experiment_g_per_mL=EXPERIMENT_G_PER_ML,
                  reference_density_g_per_mL=reference.get("density_at_1bar_g_per_mL"),
                  runs=[dict(name=name, **summary(run, blocks)) for name, run in runs.items() if run.data["step"]],
                  machine=machine(), command="python benchmarks/npt_density.py --model MODEL", measured=time.strftime("%F %T"))
    write_atomic(output, json.dumps(result, indent=1))
    if result["runs"]:
        plot({name: run for name, run in runs.items() if run.data["step"]}, reference,
             os.path.splitext(output)[0] + ".png")
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=os.path.join(ROOT, "example_systems", "ecemc.pdb"))
    parser.add_argument("--model", default="carbonates-xtb", help="shipped model name or model file")
    parser.add_argument("--correction", help="the model's opt-in density correction to run with (e.g. experiment; "
                                             "default: none)")
    parser.add_argument("--temperature", type=float, default=298.0, help="K")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--hydrogen-mass", type=float, default=3.0, help="Da (0: no repartitioning)")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--barostat-interval", type=int, default=25, help="steps between volume moves")
    parser.add_argument("--equilibration-ps", type=float, default=20.0)
    parser.add_argument("--production-ps", type=float, default=100.0, help="the run ends here (can be raised)")
    parser.add_argument("--frame-ps", type=float, default=0.1, help="time between recorded frames")
    parser.add_argument("--chunk-ps", type=float, default=1.0, help="time between saves of the run state")
    parser.add_argument("--blocks", type=int, default=10, help="blocks of the density's standard error")
    parser.add_argument("--r-max", type=float, default=0.9, help="nm, RDF range")
    parser.add_argument("--bin-width", type=float, default=0.01, help="nm, RDF bins")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--precision", default="single", choices=["single", "double", "auto"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, help="stop after the chunk that passes this wall time")
    parser.add_argument("--run-dir", help="where run.json lives (default benchmarks/results/npt/<model>)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "npt_density.json"))
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    settings = dict(input=os.path.basename(args.input), model=args.model, correction=args.correction,
                    temperature_K=args.temperature, pressure_bar=args.pressure, timestep_fs=args.timestep,
                    hydrogen_mass_amu=args.hydrogen_mass or None, friction_per_ps=args.friction,
                    barostat_interval=args.barostat_interval, frame_ps=args.frame_ps, chunk_ps=args.chunk_ps,
                    equilibration_ps=args.equilibration_ps, seed=args.seed, r_max_nm=args.r_max,
                    bin_width_nm=args.bin_width, platform=args.platform, precision=args.precision)
    run_dir = args.run_dir or os.path.join(HERE, "results", "npt", os.path.basename(args.model).removesuffix(".pt")
                                           + (f"-{args.correction}" if args.correction else ""))
    run = Run(os.path.join(run_dir, "run.json"), settings)
    topology, positions = read_structure([args.input])
    system = build_system(settings, topology, positions)
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    symbols = np.array([atom.element.symbol for atom in topology.atoms()])
    molecule = np.array([atom.residue.index for atom in topology.atoms()])
    frame_steps = max(1, round(1000 * args.frame_ps / args.timestep))
    total = round(1000 * (args.equilibration_ps + args.production_ps) / args.timestep / frame_steps) * frame_steps
    start = time.time()
    while run.data["step"] < total:
        run_chunk(run, system, topology, positions, args, masses, symbols, molecule)
        series = run.data["series"]
        print(f"{args.model}: step {run.data['step']}/{total}, {series['time_ps'][-1]:.1f} ps, "
              f"{series['density_g_per_mL'][-1]:.4f} g/mL, {series['temperature_K'][-1]:.0f} K, "
              f"{run.data['chunk_s_per_step'][-1]:.3f} s/step", flush=True)
        if args.max_minutes and time.time() - start > 60 * args.max_minutes:
            break
    entry = summary(run, args.blocks)
    report(args.output, args.blocks, os.path.dirname(run_dir))
    if entry["density_g_per_mL"] is not None:
        print(f"{args.model}: {entry['density_g_per_mL']:.4f} ± {entry['stderr_g_per_mL']:.4f} g/mL over "
              f"{entry['production_ps']:.1f} ps of production; experiment {EXPERIMENT_G_PER_ML} g/mL")
    return entry


if __name__ == "__main__":
    main()
