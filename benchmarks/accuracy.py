"""Accuracy of CGAA against its all-atom baseline and MACE on the carbonate data, one run.

Trains on ``solvent_xtb_train_200.xyz`` only and tests on all 1000 configurations of
``solvent_xtb_test.xyz``:

* CGAA with molecule grains (the shipped model's config), with atom grains (the
  all-atom baseline: same code, width and depth) and with fragment grains (every
  carbonate split into its CO3 group and its alkyl parts): the grain-size ablation,
  force error against ms per evaluation of the 800-atom EC/EMC box;
* learning curves: molecule and atom grains on the 20-, 50- and 200-config files;
* MACE (mace-torch 0.3.16, its own virtual environment because it pins e3nn 0.4.4)
  trained with ``mace_run_train`` as in its tutorials.

Every CGAA variant on 200 configurations gets the same optimisation budget (``--epochs``,
default the shipped config's); the 20- and 50-config runs get 2.5x the epochs (fewer optimiser
steps than the 200-config runs all the same: 28 % and 62 %). Runs are resumable: a finished
variant is reused, an interrupted one resumes from
its checkpoint. Writes ``benchmarks/results/accuracy.json``, ``accuracy.md``,
``learning_curves.png`` and ``grain_ablation.png``.

Usage: ``python benchmarks/accuracy.py [--epochs N] [--mace-size medium|tutorial]
[--only NAME ...] [--skip-mace]``.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np
from ase.io import read, write

from common import MACE_SIZES, MACE_VERSION, cpu_model, mace_errors, train_cgaa, train_mace

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "carbonates"))
RUNS = os.path.join(HERE, "runs", "accuracy")
RESULTS = os.path.join(HERE, "results")
BASE_CONFIG = os.path.join(ROOT, "training", "configs", "carbonates-xtb.yaml")
BOX = os.path.join(ROOT, "example_systems", "ecemc.pdb")


def fragment_ids(atoms, molecule) -> np.ndarray:
    """Per-atom fragment index: each carbonate's C(O)3 group, and its alkyl parts (carbons linked
    by C-C distances below 1.9 Å, each hydrogen with its nearest such carbon)."""
    symbols = np.array(atoms.get_chemical_symbols())
    d = atoms.get_all_distances()
    fragment = np.full(len(atoms), -1)
    n = 0
    for m in np.unique(molecule):
        members = np.nonzero(molecule == m)[0]
        carbons = members[symbols[members] == "C"]
        oxygens = members[symbols[members] == "O"]
        # The carbonate carbon: the carbon closest to its three nearest oxygens.
        closeness = [np.sort(d[c, oxygens])[:3].sum() for c in carbons]
        centre = carbons[int(np.argmin(closeness))]
        group = [centre] + list(oxygens[np.argsort(d[centre, oxygens])[:3]])
        fragment[group] = n
        n += 1
        alkyl = [c for c in carbons if c != centre]
        # Connected components of the alkyl carbons.
        label = {}
        for c in alkyl:
            if c in label:
                continue
            stack, label[c] = [c], n
            while stack:
                a = stack.pop()
                for b in alkyl:
                    if b not in label and d[a, b] < 1.9:
                        label[b] = n
                        stack.append(b)
            n += 1
        for c, f in label.items():
            fragment[c] = f
        hydrogens = members[symbols[members] == "H"]
        for h in hydrogens:
            fragment[h] = label[alkyl[int(np.argmin(d[h, alkyl]))]]
        leftover = [a for a in members if fragment[a] < 0]
        if leftover:  # an oxygen beyond the three nearest (none in carbonates): its own grain
            for a in leftover:
                fragment[a] = n
                n += 1
    return fragment


def fragment_file(name: str) -> str:
    """A copy of a data file with a per-atom ``fragID`` column."""
    out = os.path.join(RUNS, "data", name.replace(".xyz", "_fragments.xyz"))
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        frames = read(os.path.join(DATA, name), index=":")
        for atoms in frames:
            if atoms.info.get("config_type") != "IsolatedAtom":
                atoms.arrays["fragID"] = fragment_ids(atoms, atoms.arrays["molID"])
        write(out + ".tmp.xyz", frames)
        os.replace(out + ".tmp.xyz", out)
    return out


def variants(epochs: int):
    """name -> (config overrides, grains on the box, label)."""
    out = {}
    for n in (20, 50, 200):
        train = os.path.join(DATA, f"solvent_xtb_train_{n}.xyz")
        out[f"molecule-{n}"] = dict(train_file=train, grains="column", grain_key="molID")
        out[f"atom-{n}"] = dict(train_file=train, grains="atom", grain_kind="atom")
    out["fragment-200"] = dict(train_file=fragment_file("solvent_xtb_train_200.xyz"), grains="column",
                               grain_key="fragID", grain_kind="fragment")
    for name, config in out.items():
        # Smaller training sets get 2.5x the epochs (equal optimiser steps would need 4x and 10x;
        # capped for cost), so that the curve measures the data more than the optimiser.
        n = int(name.rsplit("-", 1)[1])
        config["epochs"] = int(round(epochs * min(200 / n, 2.5)))
        if "atomic_energies" not in config:
            config["atomic_energies"] = "fit"
    return out


def train_variant(name: str, overrides: dict) -> str:
    """Train (or resume, or reuse) one variant of the base config; the model file's path."""
    return train_cgaa(BASE_CONFIG, name, RUNS, dict(overrides, test_file=None))


def test_errors(name: str, model_path: str) -> dict:
    from training.evaluate import evaluate_file
    if name.startswith("fragment"):
        data, key = fragment_file("solvent_xtb_test.xyz"), "fragID"
    else:
        data, key = os.path.join(DATA, "solvent_xtb_test.xyz"), "molID"
    plot = os.path.join(RUNS, f"{name}_parity.png")
    return evaluate_file(model_path, data, grain_key=key, plot=plot)


def box_grains(kind: str):
    """Grain lists of the 800-atom EC/EMC box for molecule, atom or fragment grains."""
    from ase import Atoms
    from openmm import app
    pdb = app.PDBFile(BOX)
    n = pdb.topology.getNumAtoms()
    if kind == "atom":
        return pdb, [[i] for i in range(n)]
    residue = np.array([a.residue.index for a in pdb.topology.atoms()])
    if kind == "molecule":
        return pdb, [list(np.nonzero(residue == r)[0]) for r in np.unique(residue)]
    atoms = Atoms([a.element.symbol for a in pdb.topology.atoms()],
                  positions=np.array(pdb.getPositions(asNumpy=True)._value) * 10.0)
    # Molecules in the PDB are whole (the builder writes unwrapped molecules).
    fragment = fragment_ids(atoms, residue)
    return pdb, [list(np.nonzero(fragment == f)[0]) for f in np.unique(fragment)]


def ms_per_evaluation(model_path: str, kind: str, repeats: int, threads: int) -> float:
    """Median ms per energy+forces evaluation of the EC/EMC box in an OpenMM CPU Context."""
    import openmm

    from cgaa_openmm import CGAAPotential
    pdb, groups = box_grains(kind)
    potential = CGAAPotential.load(model_path)
    system = potential.createSystem(pdb.topology, grains=groups, allowUnknownGrains=True, precision="single")
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005),
                             openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    context.setPositions(pdb.positions)
    for _ in range(2):
        context.getState(getEnergy=True, getForces=True)
    times = []
    for _ in range(repeats):
        context.setPositions(pdb.positions)
        t0 = time.perf_counter()
        context.getState(getEnergy=True, getForces=True)
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def mace(size: str, venv: str, threads: int) -> dict:
    """Train MACE in its own virtual environment and evaluate it on the test set."""
    work = os.path.join(RUNS, f"mace-{size}")
    model = train_mace(size, venv, work, threads)
    predictions = os.path.join(work, f"test_predictions_{os.path.basename(model)}.xyz")
    if not os.path.exists(predictions):
        subprocess.run([os.path.join(venv, "bin", "mace_eval_configs"),
                        f"--configs={os.path.join(DATA, 'solvent_xtb_test.xyz')}", f"--model={model}",
                        f"--output={predictions}", "--device=cpu", "--default_dtype=float64"], check=True, cwd=work)
    return dict(mace_errors(predictions), size=size, mace_version=MACE_VERSION, model=os.path.basename(model),
                training_time=open(os.path.join(work, "train_minutes.txt")).read().strip())


def save(path: str, update: dict) -> dict:
    """Merge ``update`` into the results file (re-read first: runs of this script may overlap)."""
    results = json.load(open(path)) if os.path.exists(path) else {}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(results.get(key), dict):
            results[key].update(value)
        else:
            results[key] = value
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
    return results


def plots(results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cgaa = results["cgaa"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for kind, marker in (("molecule", "o"), ("atom", "s")):
        points = sorted((int(k.split("-")[1]), v["forces_rmse"]) for k, v in cgaa.items() if k.startswith(kind + "-"))
        if points:
            ax.loglog(*zip(*points), marker=marker, label=f"CGAA, {kind} grains")
    if "mace" in results:
        ax.scatter([200], [results["mace"]["forces_rmse"]], marker="*", s=120, color="k",
                   label=f"MACE ({results['mace']['size']})")
    ax.set_xlabel("training configurations")
    ax.set_ylabel("test force RMSE (eV/Å)")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "learning_curves.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for kind in ("atom", "fragment", "molecule"):
        row = cgaa.get(f"{kind}-200")
        if row and "ms_per_evaluation" in row:
            ax.scatter(row["ms_per_evaluation"], row["forces_rmse"], s=50)
            ax.annotate(f"{kind} grains", (row["ms_per_evaluation"], row["forces_rmse"]),
                        textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("ms per energy+forces, 800-atom EC/EMC box (OpenMM CPU)")
    ax.set_ylabel("test force RMSE (eV/Å)")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "grain_ablation.png"), dpi=120)
    plt.close(fig)


def table(results: dict) -> str:
    lines = ["| model | train configs | force RMSE (eV/Å) | force MAE (eV/Å) | energy RMSE (meV/atom) "
             "| ms/eval, 800 atoms |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in results["cgaa"].items():
        kind, n = name.rsplit("-", 1)
        label = "CGAA, shipped model (molecule grains)" if kind == "shipped" else f"CGAA, {kind} grains"
        ms = f"{row['ms_per_evaluation']:.0f}" if "ms_per_evaluation" in row else ""
        lines.append(f"| {label} | {n} | {row['forces_rmse']:.3f} | {row['forces_mae']:.3f} | "
                     f"{row['energy_rmse_mev_per_atom']:.2f} | {ms} |")
    if "mace" in results:
        m = results["mace"]
        lines.append(f"| MACE {m['mace_version']} ({m['size']}) | 200 | {m['forces_rmse']:.3f} | "
                     f"{m['forces_mae']:.3f} | {m['energy_rmse_mev_per_atom']:.2f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs of every CGAA variant (default: the shipped config's)")
    parser.add_argument("--only", nargs="*", help="CGAA variants to run, e.g. molecule-200 atom-200")
    parser.add_argument("--mace-size", default="medium", choices=sorted(MACE_SIZES))
    parser.add_argument("--mace-venv", default=os.path.join(HERE, ".venv-mace"))
    parser.add_argument("--skip-mace", action="store_true")
    parser.add_argument("--mace-threads", type=int, default=2, help="torch threads of the MACE training")
    parser.add_argument("--threads", type=int, default=2, help="OpenMM CPU threads for the timings")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    from training.config import load_config
    base = {k: v for k, v in load_config(BASE_CONFIG).items()}
    epochs = args.epochs or base["epochs"]
    os.makedirs(RUNS, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    out_path = os.path.join(RESULTS, "accuracy.json")
    save(out_path, dict(machine=dict(cpu=cpu_model(), cores=os.cpu_count()), epochs=epochs,
                        train_file="solvent_xtb_train_200.xyz (_20, _50 for learning curves)",
                        test_file="solvent_xtb_test.xyz (1000 configurations)"))
    chosen = variants(epochs)
    if args.only is not None:
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    for name, overrides in chosen.items():
        model_path = train_variant(name, overrides)
        row = test_errors(name, model_path)
        if name.endswith("-200"):
            row["ms_per_evaluation"] = ms_per_evaluation(model_path, name.split("-")[0], args.repeats, args.threads)
        save(out_path, {"cgaa": {name: row}})
    from cgaa_openmm.potential import resolve_model_path
    shipped = test_errors("shipped", resolve_model_path("carbonates-xtb"))
    shipped["ms_per_evaluation"] = ms_per_evaluation(resolve_model_path("carbonates-xtb"), "molecule",
                                                     args.repeats, args.threads)
    save(out_path, {"cgaa": {"shipped-200": shipped}})
    if not args.skip_mace:
        save(out_path, dict(mace=mace(args.mace_size, args.mace_venv, args.mace_threads)))
    results = save(out_path, {})
    with open(os.path.join(RESULTS, "accuracy.md"), "w") as f:
        f.write(table(results))
    plots(results)
    print(table(results))


if __name__ == "__main__":
    main()
