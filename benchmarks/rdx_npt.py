"""The α-RDX crystal under anisotropic NPT with a model: lattice constants, how far molecules
leave their lattice sites, and whether they keep their orientation. Resumable across sessions.

    python benchmarks/rdx_npt.py run --model training/runs/rdx-xtb-v2.pt [--temperature 300]
        [--equilibration-ps 5 --production-ps 20] [--threads 2] [--max-minutes 120]
    python benchmarks/rdx_npt.py run --model MODEL --ramp-to 700 --name heat   # heat past the melting point
    python benchmarks/rdx_npt.py report

``run``: Langevin (1/ps) + ``MonteCarloAnisotropicBarostat`` (1 bar on each axis, moving molecules
whole) of the GFN2-xTB-relaxed 2 x 2 x 2 supercell (``example_systems/rdx-gfn2-2x2x2.pdb``, 1344
atoms, every box edge over twice the model's cutoff), one grain per molecule, 2 fs steps with H at
3 Da. ``--ramp-to`` raises the thermostat's (and barostat's) temperature linearly from
``--temperature`` at the end of equilibration to this value at the end of the run. Every
``--frame-ps`` the series gets the cell constants (box / ``--cells``), density, energies,
temperature, and two order parameters against the start crystal:

- ``site_rmsd_A``: RMS distance of the molecular centres of mass from their lattice sites (the
  start's fractional centres in the current box), the crystal's common drift removed;
- ``orientation_p2``: <P2(u0 . u)> over every heavy atom's unit vector from its molecule's centre,
  now (u) and at the start (u0): 1 for molecules that only vibrate, 0 for random orientations.

The run advances in chunks of ``--chunk-ps``; after each, the whole run (settings, OpenMM ``State``
XML, series, seconds per step) is written atomically to ``results/rdx_npt/NAME/run.json``, the
portable state to commit (no trajectory). The same command continues it anywhere.

``report``: every run into ``results/rdx_npt.json`` (mean ± block standard error of a, b, c over
production, against the GFN2-xTB relaxed cell and experiment) and ``results/rdx_npt.png``; the
longest 300 K run without ramp gives ``lattice_model_A`` and ``production_ps`` in ``results/rdx.json``.
Units: Å, ps, fs, K, bar, g/mL, kJ/mol, Da.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import openmm
from openmm import unit

from common import ROOT, machine, saved_run
from npt_density import G_PER_ML_PER_DA_NM3, write_atomic

from cgaa_openmm import CGAAPotential
from cgaa_openmm.analysis import block_average
from cgaa_openmm.simulate import get_platform, make_barostat, make_integrator, read_structure

HERE = os.path.dirname(os.path.abspath(__file__))
STATES = os.path.join(HERE, "results", "rdx_npt")
INPUT = os.path.join(ROOT, "example_systems", "rdx-gfn2-2x2x2.pdb")
#: Settings a continued run must share with the run it continues.
RUN_KEYS = ("input", "cells", "model", "temperature_K", "ramp_to_K", "pressure_bar", "timestep_fs",
            "hydrogen_mass_amu", "friction_per_ps", "barostat_interval", "frame_ps", "chunk_ps",
            "equilibration_ps", "seed", "platform", "precision")
#: Orientational order below which a frame counts as disordered (a melt gives ~0).
DISORDERED_P2 = 0.5


class Crystal:
    """The start crystal's molecules, and the order parameters of a frame against it."""

    def __init__(self, topology, positions_nm: np.ndarray, box_nm: np.ndarray, masses: np.ndarray):
        self.molecules = [np.array([atom.index for atom in residue.atoms()]) for residue in topology.residues()]
        heavy = np.array([atom.element.symbol != "H" for atom in topology.atoms()])
        self.heavy = [m[heavy[m]] for m in self.molecules]
        self.masses = masses
        centres = self.centres(positions_nm, box_nm)
        self.fractional = centres / box_nm
        self.vectors = self.unit_vectors(positions_nm, box_nm, centres)

    def whole(self, positions: np.ndarray, box: np.ndarray, atoms: np.ndarray) -> np.ndarray:
        """The atoms of one molecule, each the image nearest the molecule's first atom."""
        delta = positions[atoms] - positions[atoms[0]]
        return positions[atoms[0]] + delta - box * np.round(delta / box)

    def centres(self, positions: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Centres of mass (nm) of every molecule, made whole first (element masses)."""
        return np.array([self.masses[m] @ self.whole(positions, box, m) / self.masses[m].sum()
                         for m in self.molecules])

    def unit_vectors(self, positions: np.ndarray, box: np.ndarray, centres: np.ndarray) -> list:
        vectors = []
        for m, heavy, centre in zip(self.molecules, self.heavy, centres):
            atoms = self.whole(positions, box, m)[np.isin(m, heavy)] - centre
            vectors.append(atoms / np.linalg.norm(atoms, axis=1, keepdims=True))
        return vectors

    def order(self, positions: np.ndarray, box: np.ndarray):
        """(site RMSD in Å, orientational <P2>) of a frame in an orthorhombic box (nm)."""
        centres = self.centres(positions, box)
        shift = centres - self.fractional * box
        shift -= box * np.round(shift / box)
        shift -= shift.mean(axis=0)
        cosines = np.concatenate([np.sum(u0 * u, axis=1) for u0, u in
                                  zip(self.vectors, self.unit_vectors(positions, box, centres))])
        return 10 * float(np.sqrt(np.mean(np.sum(shift ** 2, axis=1)))), float(np.mean(1.5 * cosines ** 2 - 0.5))


def setpoint(settings: dict, time_ps: float) -> float:
    """The thermostat's temperature (K) at ``time_ps``: constant, or ramped over production."""
    if settings["ramp_to_K"] is None or time_ps <= settings["equilibration_ps"]:
        return settings["temperature_K"]
    fraction = min(1.0, (time_ps - settings["equilibration_ps"]) / settings["production_ps"])
    return settings["temperature_K"] + fraction * (settings["ramp_to_K"] - settings["temperature_K"])


def new_run(settings: dict) -> dict:
    series = {key: [] for key in ("step", "time_ps", "setpoint_K", "a_A", "b_A", "c_A", "density_g_per_mL",
                                  "potential_kJ_per_mol", "temperature_K", "site_rmsd_A", "orientation_p2")}
    return dict(settings=settings, state_xml=None, step=0, series=series, chunk_s_per_step=[], threads=[])


def run_chunk(run: dict, path: str, system, topology, positions, crystal: Crystal, threads: int) -> None:
    """Advance the run by one chunk (or to its end) and save it to ``path``."""
    settings, series = run["settings"], run["series"]
    dt = settings["timestep_fs"]
    frame_steps = max(1, round(1000 * settings["frame_ps"] / dt))
    total = round(1000 * (settings["equilibration_ps"] + settings["production_ps"]) / dt / frame_steps) * frame_steps
    steps = min(frame_steps * max(1, round(settings["chunk_ps"] / settings["frame_ps"])), total - run["step"])
    step = run["step"]
    integrator = make_integrator("NPT", setpoint(settings, step * dt / 1000), dt, settings["friction_per_ps"])
    integrator.setRandomNumberSeed(settings["seed"] + step)
    barostat = next(f for f in system.getForces() if isinstance(f, openmm.MonteCarloAnisotropicBarostat))
    barostat.setRandomNumberSeed(settings["seed"] + step)
    platform, properties = get_platform(settings["platform"], threads)
    context = openmm.Context(system, integrator, platform, properties)
    if run["state_xml"]:
        context.setState(openmm.XmlSerializer.deserialize(run["state_xml"]))
    else:
        context.setPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
        context.setPositions(positions)
        context.setVelocitiesToTemperature(settings["temperature_K"] * unit.kelvin, settings["seed"])
    mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    dof = 3 * system.getNumParticles() - 3
    gas = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    cells = np.array(settings["cells"])
    t0 = time.perf_counter()
    for _ in range(steps // frame_steps):
        target = setpoint(settings, step * dt / 1000)
        integrator.setTemperature(target * unit.kelvin)
        context.setParameter(openmm.MonteCarloAnisotropicBarostat.Temperature(), target)
        integrator.step(frame_steps)
        step += frame_steps
        state = context.getState(getEnergy=True, getPositions=True)
        box = np.diag(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
        rmsd, p2 = crystal.order(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), box)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        a, b, c = 10 * box / cells
        for key, value in (("step", step), ("time_ps", round(step * dt / 1000, 6)), ("setpoint_K", round(target, 2)),
                           ("a_A", round(a, 5)), ("b_A", round(b, 5)), ("c_A", round(c, 5)),
                           ("density_g_per_mL", round(mass / np.prod(box) * G_PER_ML_PER_DA_NM3, 6)),
                           ("potential_kJ_per_mol", round(state.getPotentialEnergy().value_in_unit(
                               unit.kilojoule_per_mole), 3)),
                           ("temperature_K", round(2 * kinetic / (dof * gas), 3)),
                           ("site_rmsd_A", round(rmsd, 5)), ("orientation_p2", round(p2, 5))):
            series[key].append(value)
    run["chunk_s_per_step"].append(round((time.perf_counter() - t0) / steps, 5))
    run["threads"].append(threads)
    state = context.getState(getPositions=True, getVelocities=True, getParameters=True)
    run["state_xml"] = openmm.XmlSerializer.serialize(state)
    run["step"] = step
    write_atomic(path, json.dumps(run, separators=(",", ":")))


def summary(run: dict, blocks: int, relaxed: list, experiment: list) -> dict:
    """A run's entry in ``rdx_npt.json``: production means ± block standard errors."""
    settings, series = run["settings"], run["series"]
    t = np.array(series["time_ps"])
    production = t > settings["equilibration_ps"] + 1e-9
    entry = dict({key: settings[key] for key in ("model", "temperature_K", "ramp_to_K", "pressure_bar",
                                                 "timestep_fs", "hydrogen_mass_amu", "cells", "equilibration_ps")},
                 simulated_ps=float(t[-1]) if len(t) else 0.0,
                 production_ps=round(float(t[production][-1]) - settings["equilibration_ps"], 3) if production.any() else 0.0,
                 s_per_step=float(np.median(run["chunk_s_per_step"])) if run["chunk_s_per_step"] else None,
                 threads=sorted(set(run["threads"])))
    if production.sum() >= blocks and settings["ramp_to_K"] is None:
        lattice = [block_average(np.array(series[k])[production], blocks) for k in ("a_A", "b_A", "c_A")]
        entry.update(lattice_A=[round(m, 4) for m, _ in lattice], lattice_stderr_A=[round(e, 4) for _, e in lattice],
                     relative_to_gfn2=[round(m / r - 1, 4) for (m, _), r in zip(lattice, relaxed)],
                     relative_to_experiment=[round(m / r - 1, 4) for (m, _), r in zip(lattice, experiment)])
        for key in ("density_g_per_mL", "temperature_K", "site_rmsd_A", "orientation_p2"):
            mean, error = block_average(np.array(series[key])[production], blocks)
            entry["kinetic_temperature_K" if key == "temperature_K" else key] = [round(mean, 5), round(error, 5)]
    if settings["ramp_to_K"] is not None and production.any():
        p2 = np.array(series["orientation_p2"])
        lost = np.flatnonzero(production & (p2 < DISORDERED_P2))
        entry["disordered_at_setpoint_K"] = float(series["setpoint_K"][lost[0]]) if len(lost) else None
        entry["final"] = {key: series[key][-1] for key in ("setpoint_K", "density_g_per_mL", "site_rmsd_A",
                                                            "orientation_p2")}
    return entry


def plot(runs: dict, relaxed: list, experiment: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (cell, order) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        series = run["series"]
        for key, style in (("a_A", "-"), ("b_A", "--"), ("c_A", ":")):
            cell.plot(series["time_ps"], series[key], style, lw=0.8, label=f"{name} {key[0]}")
        order.plot(series["time_ps"], series["orientation_p2"], lw=0.8, label=f"{name} <P2>")
        order.plot(series["time_ps"], series["site_rmsd_A"], "--", lw=0.8, label=f"{name} site RMSD (Å)")
    for values, style, label in ((relaxed, "k-", "GFN2-xTB relaxed"), (experiment, "k--", "experiment 295 K")):
        for value in values:
            cell.axhline(value, color=style[0], ls=style[1:], lw=0.5)
        cell.plot([], [], style, lw=0.5, label=label)
    cell.set(xlabel="time (ps)", ylabel="cell constant (Å)")
    order.set(xlabel="time (ps)", ylabel="order")
    cell.legend(fontsize=6)
    order.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(states: str = STATES, output: str = os.path.join(HERE, "results", "rdx_npt.json"),
           rdx_json: str = os.path.join(HERE, "results", "rdx.json"), blocks: int = 5) -> dict:
    """Rewrite ``output`` and its plot from every run under ``states``; the lattice keys of ``rdx_json``."""
    sys.path.insert(0, os.path.join(ROOT, "example_systems"))
    from build_rdx import CELL
    with open(os.path.join(ROOT, "example_systems", "rdx-gfn2.json")) as file:
        relaxed = [round(v, 4) for v in json.load(file)["best"]["cell_A"]]
    runs = {}
    for name in sorted(os.listdir(states)) if os.path.isdir(states) else []:
        if os.path.exists(os.path.join(states, name, "run.json")):
            with open(os.path.join(states, name, "run.json")) as file:
                runs[name] = json.load(file)
    runs = {name: run for name, run in runs.items() if run["step"]}
    entries = {name: summary(run, blocks, relaxed, list(CELL)) for name, run in runs.items()}
    result = dict(lattice_gfn2_A=relaxed, lattice_experiment_A=list(CELL), runs=entries, machine=machine(),
                  command="python benchmarks/rdx_npt.py run --model MODEL", measured=time.strftime("%F %T"))
    write_atomic(output, json.dumps(result, indent=1))
    if runs:
        plot(runs, relaxed, list(CELL), os.path.splitext(output)[0] + ".png")
    held = {name: e for name, e in entries.items() if e.get("lattice_A") and e["temperature_K"] == 300.0}
    if held and os.path.exists(rdx_json):
        name = max(held, key=lambda n: held[n]["production_ps"])
        with open(rdx_json) as file:
            rdx = json.load(file)
        rdx.update(lattice_model_A=held[name]["lattice_A"], production_ps=held[name]["production_ps"],
                   lattice_run=os.path.relpath(os.path.join(states, name, "run.json"), ROOT))
        write_atomic(rdx_json, json.dumps(rdx, indent=1))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--model", help="model file or shipped name")
    parser.add_argument("--input", default=INPUT, help="PDB of the supercell, one residue per molecule")
    parser.add_argument("--cells", type=int, nargs=3, default=[2, 2, 2], help="unit cells along a, b, c")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--ramp-to", type=float, help="K: heat linearly to this over production")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--hydrogen-mass", type=float, default=3.0, help="Da (0: no repartitioning)")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--barostat-interval", type=int, default=25, help="steps between box moves")
    parser.add_argument("--equilibration-ps", type=float, default=5.0)
    parser.add_argument("--production-ps", type=float, default=20.0, help="the run ends here (can be raised)")
    parser.add_argument("--frame-ps", type=float, default=0.1)
    parser.add_argument("--chunk-ps", type=float, default=1.0, help="time between saves of the run state")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--precision", default="single", choices=["single", "double", "auto"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, help="stop after the chunk that passes this wall time")
    parser.add_argument("--name", help="run folder under --states (default: model and temperature)")
    parser.add_argument("--states", default=STATES)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "rdx_npt.json"))
    parser.add_argument("--rdx-json", default=os.path.join(HERE, "results", "rdx.json"))
    args = parser.parse_args(argv)
    if args.action == "report":
        return report(args.states, args.output, args.rdx_json, args.blocks)
    if not args.model:
        parser.error("run needs --model")
    import torch
    torch.set_num_threads(args.threads)
    settings = dict(input=os.path.basename(args.input), cells=args.cells, model=args.model,
                    temperature_K=args.temperature, ramp_to_K=args.ramp_to, pressure_bar=args.pressure,
                    timestep_fs=args.timestep, hydrogen_mass_amu=args.hydrogen_mass or None,
                    friction_per_ps=args.friction, barostat_interval=args.barostat_interval, frame_ps=args.frame_ps,
                    chunk_ps=args.chunk_ps, equilibration_ps=args.equilibration_ps, seed=args.seed,
                    platform=args.platform, precision=args.precision)
    name = args.name or f"{os.path.basename(args.model).removesuffix('.pt')}-{args.temperature:g}K"
    path = os.path.join(args.states, name, "run.json")
    run = saved_run(path, settings, RUN_KEYS) or new_run(settings)
    run["settings"]["production_ps"] = args.production_ps
    topology, positions = read_structure([args.input])
    potential = CGAAPotential.load(args.model)
    system = potential.createSystem(topology, precision=args.precision, hydrogenMass=settings["hydrogen_mass_amu"],
                                    positions=positions)
    system.addForce(make_barostat("anisotropic", args.pressure, args.temperature, args.barostat_interval))
    box = np.diag(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))
    masses = np.array([atom.element.mass.value_in_unit(unit.dalton) for atom in topology.atoms()])
    crystal = Crystal(topology, np.array(positions.value_in_unit(unit.nanometer)), box, masses)
    frame_steps = max(1, round(1000 * args.frame_ps / args.timestep))
    total = round(1000 * (args.equilibration_ps + args.production_ps) / args.timestep / frame_steps) * frame_steps
    start = time.time()
    while run["step"] < total:
        run_chunk(run, path, system, topology, positions, crystal, args.threads)
        s = run["series"]
        print(f"{name}: step {run['step']}/{total}, {s['time_ps'][-1]:.1f} ps, {s['setpoint_K'][-1]:.0f} K set, "
              f"{s['temperature_K'][-1]:.0f} K, cell {s['a_A'][-1]:.3f} {s['b_A'][-1]:.3f} {s['c_A'][-1]:.3f} Å, "
              f"site RMSD {s['site_rmsd_A'][-1]:.2f} Å, <P2> {s['orientation_p2'][-1]:.3f}, "
              f"{run['chunk_s_per_step'][-1]:.3f} s/step", flush=True)
        if args.max_minutes and time.time() - start > 60 * args.max_minutes:
            break
    result = report(args.states, args.output, args.rdx_json, args.blocks)
    return result["runs"].get(name, {})


if __name__ == "__main__":
    main()
