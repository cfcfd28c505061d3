"""Capped alanine dipeptide in TIP3P water: CGAA (residue grains) for the peptide, amber14 for the rest.

    python benchmarks/peptides/mlmm.py MODEL --ps 100 --output peptide-mlmm
    python benchmarks/peptides/mlmm.py --classical --ps 100 --output peptide-mm

builds ACE-ALA-NME (``ace-ala-nme.pdb``) in a cubic TIP3P box (``--padding`` nm), amber14 +
TIP3P with PME, and runs NVT MD (Langevin, ``--temperature`` K, 1/ps). With a MODEL, the
peptide's three residues are modelled by CGAA through ``CGAAPotential.createMixedSystem``
(mechanical embedding). By default the peptide is flexible, so ``--timestep`` defaults to 0.5 fs;
``--hbond-constraints`` keeps its bonds to hydrogen constrained, as amber14 has them (1 fs). With
``--classical`` the whole system is amber14 (bonds to H constrained, 2 fs). Writes to ``--output``:
``trajectory.dcd`` (every ``--interval`` ps), ``topology.pdb``, ``log.csv`` and ``summary.json``
(speed and the largest change of a peptide bond length from the start: a broken or squeezed bond
shows there).  ``ramachandran.py`` plots φ/ψ of the trajectories.
"""
import argparse
import json
import os
import time

import numpy as np
import openmm
import torch
from openmm import app, unit

from cgaa_openmm.data import PEPTIDES


def solvated(padding: float):
    pdb = app.PDBFile(PEPTIDES["ace-ala-nme"])
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield, model="tip3p", padding=padding * unit.nanometer)
    return modeller, forcefield


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="CGAA model file (residue grains) for the peptide")
    parser.add_argument("--classical", action="store_true", help="amber14 for the peptide too (no model)")
    parser.add_argument("--ps", type=float, default=100.0, help="length of the run after minimisation")
    parser.add_argument("--timestep", type=float,
                        help="fs (default 0.5 with a model, 1 with --hbond-constraints, 2 classical)")
    parser.add_argument("--hbond-constraints", action="store_true",
                        help="keep the peptide's bonds to H constrained under the model")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--interval", type=float, default=0.5, help="ps between trajectory frames")
    parser.add_argument("--padding", type=float, default=1.0, help="nm of water around the peptide")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (OpenMM and torch)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if bool(args.model) == args.classical:
        parser.error("give a MODEL or --classical")
    torch.set_num_threads(args.threads)
    timestep = args.timestep or (2.0 if args.classical else 1.0 if args.hbond_constraints else 0.5)
    modeller, forcefield = solvated(args.padding)
    topology = modeller.topology
    mm_system = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                        constraints=app.HBonds)
    peptide = [r.index for r in topology.residues() if r.name != "HOH"]
    if args.classical:
        system = mm_system
    else:
        from cgaa_openmm import CGAAPotential
        system = CGAAPotential.load(args.model).createMixedSystem(
            topology, mm_system, residues=peptide, removeConstraints=not args.hbond_constraints)
    integrator = openmm.LangevinMiddleIntegrator(args.temperature * unit.kelvin, 1 / unit.picosecond,
                                                 timestep * unit.femtosecond)
    integrator.setRandomNumberSeed(args.seed)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": str(args.threads)})
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=200)
    simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed)
    os.makedirs(args.output, exist_ok=True)
    state = simulation.context.getState(getPositions=True)
    with open(os.path.join(args.output, "topology.pdb"), "w") as f:
        app.PDBFile.writeFile(topology, state.getPositions(), f)
    steps = int(round(args.ps * 1000 / timestep))
    every = max(1, int(round(args.interval * 1000 / timestep)))
    simulation.reporters.append(app.DCDReporter(os.path.join(args.output, "trajectory.dcd"), every))
    simulation.reporters.append(app.StateDataReporter(os.path.join(args.output, "log.csv"), every, time=True,
                                                      potentialEnergy=True, temperature=True, speed=True))
    bonds = [(a.index, b.index) for a, b in topology.bonds() if a.residue.index in peptide]
    i, j = np.array(bonds).T
    start_xyz = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    start_length = np.linalg.norm(start_xyz[i] - start_xyz[j], axis=1)
    worst = 0.0
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        chunk = min(every, steps - done)
        simulation.step(chunk)
        done += chunk
        xyz = simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        worst = max(worst, float(np.abs(np.linalg.norm(xyz[i] - xyz[j], axis=1) - start_length).max()))
    seconds = time.perf_counter() - t0
    summary = dict(model=args.model or "amber14", ps=args.ps, timestep_fs=timestep, steps=steps,
                   hbond_constraints=bool(args.classical or args.hbond_constraints),
                   atoms=topology.getNumAtoms(), waters=topology.getNumResidues() - len(peptide),
                   threads=args.threads, seconds=round(seconds, 1),
                   ns_per_day=round(args.ps * 1e-3 / (seconds / 86400), 3),
                   ms_per_step=round(1000 * seconds / steps, 2),
                   max_bond_change_angstrom=round(worst, 3),
                   final_potential_kj_mol=simulation.context.getState(getEnergy=True).getPotentialEnergy()
                   .value_in_unit(unit.kilojoule_per_mole))
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
