"""What making a force costs: load, createForce (first, second, other topologies), memory kept by
create/drop cycles, MD step time, and README command 1, for both shipped carbonate models.

    python benchmarks/startup.py [--label after] [--root .] [--precisions single auto] [--clusters 20]
    git worktree add /tmp/before COMMIT && python benchmarks/startup.py --label before --root /tmp/before

Each (model, precision) is measured in a fresh worker process that imports ``cgaa_openmm`` from
``--root`` (so an older checkout can be measured by the same script, on the same machine, in the
same run), one torch thread:

- ``load_s``: ``CGAAPotential.load``; ``loaded_rss_mb`` after it;
- ``first_create_s`` / ``second_create_s``: ``createForce`` of the bundled 800-atom box, twice,
  with ``peak_rss_mb`` during each (``VmHWM``, reset before each call);
- ``cluster_create_s``: ``createForce`` of ``--clusters`` different carbonate clusters in turn
  (median and max), the forces kept;
- ``kept_mb_per_cycle``: RSS growth per create/drop cycle over ``--clusters`` cycles after them;
- ``step_s``: median time of one MD step (CPU platform, 0.5 fs Verlet, the box) over 20 steps.

and README command 1 (``cgaa-openmm simulate ... --steps 200``) runs once per ``--root``, timed
with its peak RSS. Results are merged into ``--output`` (default
``benchmarks/results/startup.json``) under ``--label``. Units: s, MB.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import BOX, DATA, ROOT, WORKER_ENV, machine

MODELS = ("carbonates-xtb", "carbonates-xtb-fast")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def worker(model: str, precision: str, n_clusters: int) -> dict:
    """The measurements of one (model, precision) in this process."""
    import openmm
    import torch
    from ase.io import read
    from openmm import app, unit
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from cgaa_openmm import CGAAPotential
    from cgaa_openmm.grains import topology_from_atoms
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    potential = CGAAPotential.load(model)
    result = dict(import_s=import_s, load_s=time.perf_counter() - t0, loaded_rss_mb=rss_mb())
    pdb = app.PDBFile(BOX)
    forces = []
    for which in ("first", "second"):
        reset_peak()
        t0 = time.perf_counter()
        forces.append(potential.createForce(pdb.topology, precision=precision))
        result[f"{which}_create_s"] = time.perf_counter() - t0
        result[f"{which}_peak_rss_mb"] = peak_mb()
    clusters = [a for a in read(os.path.join(DATA, "solvent_xtb_train_200.xyz"), index=":")
                if a.info.get("config_type") != "IsolatedAtom"][:n_clusters]
    times = []
    reset_peak()
    for atoms in clusters:
        t0 = time.perf_counter()
        forces.append(potential.createForce(topology_from_atoms(atoms), precision=precision))
        times.append(time.perf_counter() - t0)
    result.update(cluster_create_s=dict(median=statistics.median(times), max=max(times), n=len(times)),
                  cluster_peak_rss_mb=peak_mb())
    del forces[2:]
    start = rss_mb()
    for atoms in clusters:
        force = potential.createForce(topology_from_atoms(atoms), precision=precision)
        del force
    result["kept_mb_per_cycle"] = (rss_mb() - start) / len(clusters)
    result["rss_after_cycles_mb"] = rss_mb()

    system = openmm.System()
    for atom in pdb.topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*pdb.topology.getPeriodicBoxVectors())
    system.addForce(forces[1])
    context = openmm.Context(system, openmm.VerletIntegrator(0.5 * unit.femtosecond),
                             openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(pdb.positions)
    context.getIntegrator().step(2)
    steps = []
    for _ in range(20):
        t0 = time.perf_counter()
        context.getIntegrator().step(1)
        steps.append(time.perf_counter() - t0)
    result["step_s"] = statistics.median(steps)
    result["energy_kJ_per_mol"] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)
    return result


def readme_command(root: str) -> dict:
    """README command 1's run (after its install), timed, with its peak RSS."""
    command = [sys.executable, "-m", "cgaa_openmm.cli", "simulate", "example_systems/ecemc.pdb", "--model",
               "carbonates-xtb-fast", "--threads", "1", "--steps", "200", "--report", "20", "--output",
               os.path.join(root, "startup-readme-md"), "--overwrite"]
    # A fresh wrapper process, so that the peak RSS of its children is this command's alone.
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t0 = time.perf_counter()\n"
               "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
               "print(json.dumps([time.perf_counter() - t0, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))\n")
    out = subprocess.run([sys.executable, "-c", wrapper] + command, cwd=root, check=True, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=root, **WORKER_ENV))
    wall, peak = json.loads(out.stdout.strip().splitlines()[-1])
    return dict(wall_s=wall, peak_rss_mb=peak, command=" ".join(command[2:]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="the key of this run in the output")
    parser.add_argument("--root", default=ROOT, help="checkout whose cgaa_openmm is measured")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=["single", "auto"])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--no-readme", action="store_true", help="skip README command 1")
    parser.add_argument("--readme-only", action="store_true", help="only README command 1 (into --label's run)")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "startup.json"))
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "PRECISION", "CLUSTERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return {}
    root = os.path.abspath(args.root)
    run = dict(root=root, commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                                capture_output=True).stdout.strip(), models={})
    previous = {}
    if os.path.exists(args.output):
        with open(args.output) as file:
            previous = json.load(file).get("runs", {}).get(args.label, {})
    if args.readme_only:
        run["models"] = previous.get("models", {})
    for model in [] if args.readme_only else args.models:
        for precision in args.precisions:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", model, precision,
                                  str(args.clusters)], check=True, capture_output=True, text=True,
                                 env=dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", **WORKER_ENV))
            run["models"].setdefault(model, {})[precision] = json.loads(out.stdout.strip().splitlines()[-1])
            print(model, precision, json.dumps(run["models"][model][precision]), flush=True)
    if not args.no_readme:
        run["readme_command_1"] = readme_command(root)
        print("README command 1:", run["readme_command_1"], flush=True)
    results = {}
    if os.path.exists(args.output):
        with open(args.output) as file:
            results = json.load(file)
    results.setdefault("runs", {})[args.label] = dict(run, machine=machine(), measured=time.strftime("%F %T"))
    results["command"] = "python benchmarks/startup.py --label LABEL [--root CHECKOUT]"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
