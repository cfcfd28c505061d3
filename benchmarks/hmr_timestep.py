"""Is a timestep stable with hydrogen mass repartitioning? NVE drift and equipartition on the EC/EMC box.

    python benchmarks/hmr_timestep.py --model carbonates-xtb --timestep 2 --hydrogen-mass 3 \
        [--langevin-ps 2 --nve-ps 10] [--threads 1]

For one model, timestep and hydrogen mass, on the bundled 800-atom box (equilibrated at 300 K):

1. Langevin (300 K, 1/ps) for ``--langevin-ps``: the kinetic temperature of the hydrogens and of
   the heavy atoms, averaged over frames every 10 steps after the first 20 % (equipartition:
   a timestep too long for the fastest motions heats the light atoms against the rest, or the
   reverse);
2. from there, velocity Verlet (NVE) for ``--nve-ps``: the total energy every 10 steps, its
   linear drift (kJ/mol/ns, and per degree of freedom in K/ns) and its RMS fluctuation about the
   fit.

Appends one entry per (model, timestep, hydrogen mass) to ``--output`` (default
``benchmarks/results/hmr_timestep.json``, replacing an entry with the same key).
Units: fs, Da, K, ps, kJ/mol.
"""
import argparse
import json
import os
import time

import numpy as np
import openmm
from openmm import app, unit

from common import ROOT, machine

from cgaa_openmm import CGAAPotential
from cgaa_openmm.simulate import get_platform, make_integrator

HERE = os.path.dirname(os.path.abspath(__file__))
#: kJ/mol/K.
R = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
SAMPLE = 10


def kinetic_temperatures(velocities: np.ndarray, masses: np.ndarray, hydrogen: np.ndarray):
    """Kinetic temperature (K) of the hydrogens and of the other atoms in one frame (3 degrees
    of freedom per atom: the centre-of-mass motion, 3 of 2,400, is ignored)."""
    ke = 0.5 * masses * (velocities ** 2).sum(1)           # kJ/mol (Da nm^2/ps^2)
    return 2 * ke[hydrogen].sum() / (3 * hydrogen.sum() * R), 2 * ke[~hydrogen].sum() / (3 * (~hydrogen).sum() * R)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=os.path.join(ROOT, "example_systems", "ecemc.pdb"))
    parser.add_argument("--model", default="carbonates-xtb")
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--hydrogen-mass", type=float, default=3.0, help="Da (0: none)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--langevin-ps", type=float, default=2.0)
    parser.add_argument("--nve-ps", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--precision", default="single", choices=["single", "double", "auto"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "hmr_timestep.json"))
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    pdb = app.PDBFile(args.input)
    system = CGAAPotential.load(args.model).createSystem(pdb.topology, precision=args.precision,
                                                          hydrogenMass=args.hydrogen_mass or None,
                                                          positions=pdb.positions)
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    hydrogen = np.array([atom.element.symbol == "H" for atom in pdb.topology.atoms()])
    platform, properties = get_platform(args.platform, args.threads)

    integrator = make_integrator("NVT", args.temperature, args.timestep, 1.0)
    integrator.setRandomNumberSeed(args.seed)
    context = openmm.Context(system, integrator, platform, properties)
    context.setPeriodicBoxVectors(*pdb.topology.getPeriodicBoxVectors())
    context.setPositions(pdb.positions)
    context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed)
    n = max(5, round(1000 * args.langevin_ps / args.timestep / SAMPLE))
    temperatures = []
    t0 = time.perf_counter()
    for _ in range(n):
        integrator.step(SAMPLE)
        v = context.getState(getVelocities=True).getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        temperatures.append(kinetic_temperatures(v, masses, hydrogen))
    langevin_s = time.perf_counter() - t0
    t_h, t_heavy = np.array(temperatures[n // 5:]).mean(0)
    state = context.getState(getPositions=True, getVelocities=True)

    nve = openmm.VerletIntegrator(args.timestep * unit.femtosecond)
    context = openmm.Context(system, nve, platform, properties)
    context.setState(state)
    times, energies = [], []
    m = max(5, round(1000 * args.nve_ps / args.timestep / SAMPLE))
    t0 = time.perf_counter()
    for k in range(m + 1):
        if k:
            nve.step(SAMPLE)
        s = context.getState(getEnergy=True)
        times.append(k * SAMPLE * args.timestep / 1000)
        energies.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
        if not np.isfinite(energies[-1]):
            break
    nve_s = time.perf_counter() - t0
    times, energies = np.array(times), np.array(energies)
    finite = bool(np.isfinite(energies).all())
    slope, intercept = np.polyfit(times, energies, 1) if finite else (np.nan, np.nan)
    dof = 3 * len(masses) - 3
    entry = dict(model=args.model, timestep_fs=args.timestep, hydrogen_mass_amu=args.hydrogen_mass or None,
                 precision=args.precision, langevin_ps=args.langevin_ps,
                 hydrogen_temperature_K=float(t_h), heavy_temperature_K=float(t_heavy),
                 hydrogen_over_heavy=float(t_h / t_heavy), nve_ps=float(times[-1]), nve_finite=finite,
                 drift_kJ_per_mol_per_ns=float(slope * 1000),
                 drift_K_per_ns=float(slope * 1000 * 2 / (dof * R)),
                 fluctuation_kJ_per_mol=float(np.std(energies - (slope * times + intercept))) if finite else None,
                 s_per_step=float((langevin_s + nve_s) / (n * SAMPLE + m * SAMPLE)), threads=args.threads,
                 machine=machine(), measured=time.strftime("%F %T"),
                 command=f"python benchmarks/hmr_timestep.py --model {args.model} --timestep {args.timestep:g} "
                         f"--hydrogen-mass {args.hydrogen_mass:g} --langevin-ps {args.langevin_ps:g} "
                         f"--nve-ps {args.nve_ps:g}")
    results = {"entries": []}
    if os.path.exists(args.output):
        with open(args.output) as file:
            results = json.load(file)
    key = ("model", "timestep_fs", "hydrogen_mass_amu", "precision")
    results["entries"] = [e for e in results["entries"] if any(e[k] != entry[k] for k in key)] + [entry]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(results, file, indent=1)
    print(json.dumps({k: v for k, v in entry.items() if k not in ("machine", "command")}, indent=1))
    return entry


if __name__ == "__main__":
    main()
