"""ms per energy+forces evaluation in an OpenMM Context: CGAA grains vs atom grains, one run.

The all-atom baseline is the same code and hyperparameters with every atom its own grain and a
5 Å atom cutoff (untrained weights: speed does not depend on them). ``--variant
embed_kind=density,embed_layers=1`` also times the model with those hyperparameters changed
(untrained: what, e.g., another intra-grain embedding costs). Usage:
``python benchmarks/step_time.py [PDB] [--model NAME_OR_PATH] [--repeats 20] [--threads 2]
[--variant KEY=VALUE,... ...]``; writes ``benchmarks/results/step_time.json``.
"""
import argparse
import json
import os
import platform
import statistics
import time

import openmm
import torch
import yaml
from openmm import app

from cgaa_openmm import CGAAPotential
from cgaa_openmm.data import EXAMPLE_BOX
from cgaa_openmm.model import CGAAModel

HERE = os.path.dirname(os.path.abspath(__file__))


def time_evaluations(system, positions, repeats, threads):
    """Median and all timings (ms) of getState(energy, forces) on the CPU platform."""
    cpu = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), cpu, {"Threads": str(threads)})
    context.setPositions(positions)
    for _ in range(3):  # warm-up: TorchScript profiling runs
        context.getState(getEnergy=True, getForces=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        context.getState(getEnergy=True, getForces=True)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdb", nargs="?", default=EXAMPLE_BOX)
    parser.add_argument("--model", default="carbonates-xtb")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", nargs="*", default=[], metavar="KEY=VALUE,...",
                        help="also time the model with these hyperparameters changed "
                             "(e.g. embed_kind=density,embed_layers=1)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pdb = app.PDBFile(args.pdb)
    cgaa = CGAAPotential.load(args.model)
    baseline = cgaa.atomGrainBaseline(5.0)
    results = dict(pdb=os.path.basename(args.pdb), atoms=pdb.topology.getNumAtoms(),
                   residues=pdb.topology.getNumResidues(), threads=args.threads,
                   machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                   torch=torch.__version__, openmm=openmm.__version__)
    variants = [("cgaa_residue_grains", cgaa, "residue"), ("atom_grains", baseline, "atom")]
    for spec in args.variant:
        changes = {key: yaml.safe_load(value) for key, value in (item.split("=") for item in spec.split(","))}
        model = CGAAModel(cgaa.model.elements, cgaa.model.atomic_energies.tolist(),
                          **dict(cgaa.model.hyperparameters, **changes))
        variants.append((spec, CGAAPotential(model, dict(cgaa.metadata)), "residue"))
    for name, pot, grains in variants:
        median, times = time_evaluations(pot.createSystem(pdb.topology, grains=grains, precision="single"), pdb.positions,
                                         args.repeats, args.threads)
        results[name] = dict(median_ms=median, times_ms=times)
        print(f"{name}: {median:.1f} ms per evaluation (median of {args.repeats})", flush=True)
    results["speedup"] = results["atom_grains"]["median_ms"] / results["cgaa_residue_grains"]["median_ms"]
    print(f"CGAA is {results['speedup']:.1f}x faster than atom grains on {results['atoms']} atoms")
    for spec in args.variant:
        results[spec]["speedup"] = results["atom_grains"]["median_ms"] / results[spec]["median_ms"]
        print(f"{spec}: {results[spec]['speedup']:.1f}x faster than atom grains")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
