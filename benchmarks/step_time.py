"""ms per energy+forces evaluation in an OpenMM Context: CGAA grains vs atom grains, one run.

The all-atom baseline is the same code and hyperparameters with every atom its own grain and a
5 Å atom cutoff (untrained weights: speed does not depend on them). ``--variant
embed_kind=density,embed_layers=1`` also times the model with those hyperparameters changed
(untrained: what, e.g., another intra-grain embedding costs). All Contexts are built first and
timed in turn, one evaluation each per round, so that every variant meets the same machine load;
``paired_ratio`` is the median over rounds of the model's time over the variant's (robust where
the machine's speed drifts). ``--atoms`` tiles the bundled box (800, 3200, 9600, ...) instead of
reading PDB; ``--no-atom-grains`` leaves the baseline out (it needs GBs at 9,600 atoms). Usage:
``python benchmarks/step_time.py [PDB] [--atoms N] [--model NAME_OR_PATH] [--repeats 20]
[--threads 2] [--no-atom-grains] [--variant KEY=VALUE,... ...]``; writes
``benchmarks/results/step_time.json``.
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


def time_evaluations(systems: dict, positions, repeats: int, threads: int) -> dict:
    """All timings (ms) of getState(energy, forces) of every system (name -> System) on the CPU
    platform, the systems taken in turn, one evaluation each per round."""
    cpu = openmm.Platform.getPlatformByName("CPU")
    contexts = {}
    for name, system in systems.items():
        contexts[name] = openmm.Context(system, openmm.VerletIntegrator(0.0005), cpu, {"Threads": str(threads)})
        contexts[name].setPositions(positions)
        for _ in range(3):  # warm-up: TorchScript profiling runs
            contexts[name].getState(getEnergy=True, getForces=True)
    times = {name: [] for name in systems}
    for _ in range(repeats):
        for name, context in contexts.items():
            start = time.perf_counter()
            context.getState(getEnergy=True, getForces=True)
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdb", nargs="?", default=EXAMPLE_BOX)
    parser.add_argument("--atoms", type=int, help="tile the bundled box to this many atoms (800, 3200, 9600, ...)")
    parser.add_argument("--no-atom-grains", action="store_true", help="leave the atom-grain baseline out")
    parser.add_argument("--model", default="carbonates-xtb")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", nargs="*", default=[], metavar="KEY=VALUE,...",
                        help="also time the model with these hyperparameters changed "
                             "(e.g. embed_kind=density,embed_layers=1)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.atoms:
        from common import tiled_box
        topology, positions = tiled_box(args.atoms)
        source = f"{os.path.basename(EXAMPLE_BOX)} tiled to {args.atoms} atoms"
    else:
        pdb = app.PDBFile(args.pdb)
        topology, positions, source = pdb.topology, pdb.positions, os.path.basename(args.pdb)
    cgaa = CGAAPotential.load(args.model)
    results = dict(pdb=source, model=args.model, atoms=topology.getNumAtoms(), repeats=args.repeats,
                   residues=topology.getNumResidues(), threads=args.threads,
                   machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                   torch=torch.__version__, openmm=openmm.__version__)
    variants = [("cgaa_residue_grains", cgaa, "residue")]
    if not args.no_atom_grains:
        variants.append(("atom_grains", cgaa.atomGrainBaseline(5.0), "atom"))
    for spec in args.variant:
        changes = {key: yaml.safe_load(value) for key, value in (item.split("=") for item in spec.split(","))}
        model = CGAAModel(cgaa.model.elements, cgaa.model.atomic_energies.tolist(),
                          **dict(cgaa.model.hyperparameters, **changes))
        variants.append((spec, CGAAPotential(model, dict(cgaa.metadata)), "residue"))
    systems = {name: pot.createSystem(topology, grains=grains, precision="single") for name, pot, grains in variants}
    times = time_evaluations(systems, positions, args.repeats, args.threads)
    model_times = times["cgaa_residue_grains"]
    for name, series in times.items():
        results[name] = dict(median_ms=statistics.median(series), times_ms=series,
                             paired_ratio=statistics.median(m / t for m, t in zip(model_times, series)))
        print(f"{name}: {results[name]['median_ms']:.1f} ms per evaluation (median of {args.repeats}), "
              f"model / it {results[name]['paired_ratio']:.2f}", flush=True)
    if "atom_grains" in results:
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
