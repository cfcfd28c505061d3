"""Time and memory against system size: CGAA, its atom-grain baseline, MACE and a TIP3P floor.

EC/EMC liquid boxes are the bundled 800-atom box (``example_systems/ecemc.pdb``) tiled
na x nb x nc times (``TILINGS``: 800, 3,200, 9,600, 28,800 and 100,000 atoms), built in memory.
Every (model, size) runs in a fresh subprocess, so that its peak RSS (``ru_maxrss``) is its own:

* ``cgaa``: the shipped ``carbonates-xtb`` model (or ``--model``), molecule grains, as an
  ``openmmtorch.TorchForce``;
* ``atom``: the same code, width and depth with every atom its own grain and a 5 Å atom cutoff
  (untrained weights: speed does not depend on them), as in ``step_time.py``;
* ``mace``: mace-torch (``common.MACE_VERSION``, in its own venv as ``common.mace_python`` builds it), the
  trained tutorial model of ``accuracy.py`` if it exists, else a freshly initialised one of the
  same size (32 channels, L=0, r 4 Å, correlation 3, 2 interactions), float32, called directly with
  torch: one evaluation = mace's neighbour list and graph (matscipy) + forward + forces, no stress;
* ``mace-medium``: the same at the size of the brief's reference MACE (64 channels, L=1, r 5 Å,
  correlation 3: 0.125 eV/Å on the carbonate test set), freshly initialised;
* ``tip3p``: round(N / 3) TIP3P waters (``tip3p.xml``, PME, 1 nm cutoff, rigid), the classical floor.

The OpenMM ones time ``getState(getEnergy, getForces)`` in a CPU-platform Context (``--threads``,
also torch's threads). After two warm-up evaluations (TorchScript profiles, then optimises) it
repeats until ``--seconds`` are spent (at least 1, at most 10 repeats) and takes the median;
ns/day is at 1 fs per evaluation. A run is killed past ``--timeout`` seconds or ``--max-rss-gb``
of RSS, and one predicted (linear in N from the two largest sizes measured) to exceed either is
not started: both are recorded, not dropped. Memory is the peak RSS of the whole process and,
apart, what the evaluations add to the RSS the loaded model and Context already hold. A profile
(torch.profiler) of one eager CGAA evaluation of the 800-atom box splits its time into model
parts, forward and backward.

Usage: ``python benchmarks/scaling.py [--sizes 800 3200 ...] [--models cgaa atom mace mace-medium tip3p]
[--model NAME_OR_PATH] [--threads 2] [--quick]``. Writes ``benchmarks/results/scaling.json``, ``scaling.md`` and
``scaling.png`` (``--output-dir``); per-run logs go to ``benchmarks/runs/scaling/{full,quick}/``.
``--quick`` (for the test: outputs, not timings) runs one evaluation per model, all at once.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from common import (KJ_PER_EV, TILINGS, WORKER_ENV, available_mb, cpu_model, launch, mace_python, rss_mb,
                    tile)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODELS = ("cgaa", "atom", "mace", "mace-medium", "tip3p")
LABELS = {"cgaa": "CGAA (molecule grains)", "atom": "atom grains (5 Å)", "mace": "MACE (tutorial size)",
          "mace-medium": "MACE (medium size)", "tip3p": "TIP3P water (PME)"}
#: mace-torch hyperparameters of ``mace`` and ``mace-medium`` (as ``accuracy.MACE_SIZES`` trains them).
MACE_SIZES = {"mace": dict(r_max=4.0, hidden_irreps="32x0e"),
              "mace-medium": dict(r_max=5.0, hidden_irreps="64x0e+64x1o")}
MACE_RUN = os.path.join(HERE, "runs", "accuracy", "mace-tutorial")
WARMUP = 2


# ---------------------------------------------------------------- in the worker subprocess

def timed(evaluate, seconds: float, quick: bool) -> dict:
    """Warm-up and repeated calls of ``evaluate`` (returns the energy in kJ/mol); times in ms.

    ``quick``: one call, no warm-up."""
    warm = []
    for _ in range(0 if quick else WARMUP):
        t0 = time.perf_counter()
        energy = evaluate()
        warm.append(1e3 * (time.perf_counter() - t0))
    times = []
    while len(times) < (1 if quick else 10) and (not times or sum(times) < 1e3 * seconds):
        t0 = time.perf_counter()
        energy = evaluate()
        times.append(1e3 * (time.perf_counter() - t0))
    return dict(energy_kj_mol=float(energy), warmup_ms=warm, times_ms=times, median_ms=statistics.median(times))


def openmm_system(model: str, tiles, model_path: str) -> tuple:
    """System, positions and notes of one OpenMM model on the tiled box."""
    from openmm import app, unit
    topology, xyz = tile(tiles)
    if model == "tip3p":
        forcefield = app.ForceField("tip3p.xml")
        modeller = app.Modeller(app.Topology(), [])
        modeller.addSolvent(forcefield, model="tip3p", numAdded=round(topology.getNumAtoms() / 3),
                            neutralize=False)
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                         nonbondedCutoff=1.0 * unit.nanometer, rigidWater=True)
        return system, modeller.positions, modeller.topology, "tip3p.xml, PME, 1 nm cutoff, rigid water"
    from cgaa_openmm import CGAAPotential
    cgaa = CGAAPotential.load(model_path)
    if model == "cgaa":
        return cgaa.createSystem(topology, grains="molecule", precision="single"), xyz, topology, f"{model_path}, molecule grains"
    atom = cgaa.atomGrainBaseline(5.0)
    return atom.createSystem(topology, grains="atom", precision="single"), xyz, topology, "untrained, every atom a grain, 5 Å cutoff"


def run_openmm(model: str, tiles, threads: int, seconds: float, quick: bool, model_path: str) -> dict:
    """Timings (ms), energy (kJ/mol), setup (s) and RSS (MB) of ``cgaa``, ``atom`` or ``tip3p``."""
    import openmm
    import torch
    from openmm import unit
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    system, positions, topology, notes = openmm_system(model, tiles, model_path)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": str(threads)})
    context.setPositions(positions)
    setup = time.perf_counter() - t0
    rss_before = rss_mb()

    def evaluate():
        state = context.getState(getEnergy=True, getForces=True)
        return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return dict(timed(evaluate, seconds, quick), atoms=topology.getNumAtoms(), notes=notes, setup_s=setup,
                rss_before_eval_mb=rss_before, how="OpenMM CPU Context, getState(energy, forces)")


def fresh_mace(avg_num_neighbors: float, r_max: float, hidden_irreps: str):
    """An untrained ScaleShiftMACE as ``mace_run_train --model=MACE`` builds it (``MACE_SIZES``)."""
    import torch
    from e3nn import o3
    from mace import modules
    return modules.ScaleShiftMACE(
        r_max=r_max, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, num_interactions=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_elements=3, atomic_numbers=[1, 6, 8], atomic_energies=np.zeros(3),
        hidden_irreps=o3.Irreps(hidden_irreps), MLP_irreps=o3.Irreps("16x0e"), correlation=3,
        avg_num_neighbors=avg_num_neighbors, gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0)


def run_mace(tiles, threads: int, seconds: float, quick: bool, size: str) -> dict:
    """Timings (ms), energy (kJ/mol), setup (s) and RSS (MB) of MACE on the tiled box (in the MACE venv)."""
    from importlib.metadata import version

    import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which e3nn 0.4's torch.load needs)
    import torch
    from ase import Atoms
    from mace import data
    from mace.tools import AtomicNumberTable, torch_geometric
    from openmm import unit
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    t0 = time.perf_counter()
    topology, xyz = tile(tiles)
    atoms = Atoms(numbers=[a.element.atomic_number for a in topology.atoms()], positions=10.0 * xyz, pbc=True,
                  cell=np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)))
    trained = os.path.join(MACE_RUN, "mace-tutorial_stagetwo.model")
    trained = trained if size == "mace" and os.path.exists(trained) else None
    model = torch.load(trained, map_location="cpu") if trained else None
    z_table = AtomicNumberTable([int(z) for z in (model.atomic_numbers if model is not None else [1, 6, 8])])
    r_max = float(model.r_max) if model is not None else MACE_SIZES[size]["r_max"]

    def batch():
        graph = data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=z_table, cutoff=r_max)
        return next(iter(torch_geometric.dataloader.DataLoader([graph], batch_size=1))).to_dict()
    if model is None:
        first = batch()
        model = fresh_mace(first["edge_index"].shape[1] / len(atoms), **MACE_SIZES[size])
    model = model.float().eval()
    setup = time.perf_counter() - t0
    rss_before = rss_mb()

    def evaluate():
        out = model(batch(), compute_force=True, compute_stress=False, training=False)
        return KJ_PER_EV * float(out["energy"].detach().sum())
    weights = (f"trained ({os.path.relpath(trained, ROOT)})" if trained else
               f"freshly initialised ({MACE_SIZES[size]['hidden_irreps']}, max_ell 3, correlation 3, "
               f"2 interactions, r {MACE_SIZES[size]['r_max']:g} Å)")
    return dict(timed(evaluate, seconds, quick), atoms=len(atoms), setup_s=setup, rss_before_eval_mb=rss_before,
                notes=f"mace-torch {version('mace-torch')}, {weights}, float32",
                how="torch directly: mace's neighbour list and graph, forward, forces (no stress)")


PARTS = {  # model part -> submodules of CGAAModel whose calls it times
    "centre embedding": ("species_embedding", "solid_harmonics", "centre_basis", "centre_embedding"),
    "intra-grain embedding": ("intra_basis", "intra_layers", "atom_readout"),
    "grain products and message passing": ("pool", "grain_products", "grain_basis", "grain_layers",
                                           "grain_readout"),
}
SEARCH = "neighbour search / unwrapping"


def run_profile(tiles, threads: int, quick: bool, model_path: str) -> dict:
    """One eager CGAA evaluation (energy and forces) under torch.profiler, split into model parts.

    Forward time of a part: its submodules' calls (``record_function`` ranges set by forward hooks;
    ``spherical_harmonics``, shared, goes to the intra-grain or grain part by its number of
    edges). Backward time of a part: the autograd nodes whose forward op ran inside its ranges
    (matched by sequence number). ``neighbour search / unwrapping``: ``check_box``,
    ``unwrap_shifts``, ``grain_centres`` and ``neighbor_pairs`` of ``CGAAEnergy.forward``.
    ``other``: the rest (the model's grain centres and relative vectors, energy sums; the autograd
    engine's own time). Times in ms, after one warm-up evaluation (none if ``quick``).
    """
    import torch
    from openmm import unit
    from torch.profiler import ProfilerActivity, profile, record_function

    import cgaa_openmm.groups as groups
    import cgaa_openmm.torchforce as torchforce
    from cgaa_openmm import CGAAPotential
    torch.set_num_threads(threads)
    topology, xyz = tile(tiles)
    module = CGAAPotential.load(model_path).createModule(topology, grains="molecule", precision="single")
    model = module.core.grains.model
    for where, name in ((torchforce, "check_box"), (groups, "build_graph"), (torchforce, "grain_faults")):
        def wrapped(*args, _f=getattr(where, name)):
            with record_function(SEARCH):
                return _f(*args)
        setattr(where, name, wrapped)
    open_ranges = []

    def hook(label):
        def pre(mod, args):
            if label is None:  # the shared edge spherical harmonics
                n = args[0].shape[0]
                part = ("intra-grain embedding" if n == module.intra_src.shape[0]
                        else "grain products and message passing")
            else:
                part = label
            open_ranges.append(record_function(part))
            open_ranges[-1].__enter__()

        def post(mod, args, out):
            open_ranges.pop().__exit__(None, None, None)
        return pre, post
    for part, names in PARTS.items():
        for name in names:
            sub = getattr(model, name)
            for m in (sub if isinstance(sub, torch.nn.ModuleList) else [sub]):
                pre, post = hook(part)
                m.register_forward_pre_hook(pre)
                m.register_forward_hook(post)
    pre, post = hook(None)
    model.spherical_harmonics.register_forward_pre_hook(pre)
    model.spherical_harmonics.register_forward_hook(post)
    positions = torch.tensor(xyz, dtype=torch.float32)
    box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)), dtype=torch.float32)

    def evaluate():
        x = positions.clone().requires_grad_(True)
        with record_function("cgaa:forward"):
            energy = module(x, box)
        with record_function("cgaa:backward"):
            torch.autograd.grad(energy, x)
        return energy
    if not quick:
        evaluate()  # warm-up
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        energy = evaluate()
    wall = 1e3 * (time.perf_counter() - t0)
    events = list(prof.events())
    labels = set(PARTS) | {SEARCH}
    ranges = [(e.time_range.start, e.time_range.end, e.name) for e in events if e.name in labels]
    total = {e.name[5:]: (e.time_range.end - e.time_range.start) / 1e3 for e in events
             if e.name in ("cgaa:forward", "cgaa:backward")}
    forward = {p: 0.0 for p in [SEARCH, *PARTS]}
    for start, end, name in ranges:  # outermost ranges only: a part's own nested calls count once
        if not any(s < start and end <= e2 for s, e2, _ in ranges):
            forward[name] += (end - start) / 1e3
    start, end = next((e.time_range.start, e.time_range.end) for e in events if e.name == "cgaa:forward")
    owner = {}  # sequence number of a forward op -> the part it ran in
    for e in events:
        if e.sequence_nr >= 0 and start <= e.time_range.start < end:
            inside = [name for s, e2, name in ranges if s <= e.time_range.start < e2]
            owner.setdefault(e.sequence_nr, inside[-1] if inside else "other")
    backward = {p: 0.0 for p in [*forward, "other"]}
    for e in events:
        if e.name.startswith("autograd::engine::evaluate_function"):
            backward[owner.get(e.sequence_nr, "other")] += e.cpu_time_total / 1e3
    forward["other"] = total["forward"] - sum(forward.values())
    backward["other"] += total["backward"] - sum(backward.values())  # and the autograd engine's own time
    rows = [dict(part=p, forward_ms=forward[p], backward_ms=backward[p], total_ms=forward[p] + backward[p])
            for p in forward]
    rows.sort(key=lambda r: -r["total_ms"])
    ops = sorted((a for a in prof.key_averages() if a.key not in labels and not a.key.startswith("cgaa:")),
                 key=lambda a: -a.self_cpu_time_total)[:10]
    return dict(atoms=topology.getNumAtoms(), grains=module.n_grains, intra_pairs=int(module.intra_src.shape[0]),
                energy_kj_mol=float(energy), wall_ms=wall, forward_ms=total["forward"], backward_ms=total["backward"],
                parts=rows, top_ops=[dict(op=a.key, self_cpu_ms=a.self_cpu_time_total / 1e3, calls=a.count)
                                     for a in ops],
                how="eager CGAAEnergy (not TorchScript), float32, torch.profiler CPU; times include "
                    "profiler overhead")


def worker(args) -> None:
    """Run one measurement and print its result as the last line of stdout (JSON)."""
    tiles = tuple(args.tiles)
    if args.worker in MACE_SIZES:
        result = run_mace(tiles, args.threads, args.seconds, args.quick, args.worker)
    elif args.worker == "profile":
        result = run_profile(tiles, args.threads, args.quick, args.model)
    else:
        result = run_openmm(args.worker, tiles, args.threads, args.seconds, args.quick, args.model)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average"] = os.getloadavg()[0]  # of the shared machine, over the last minute
    print(json.dumps(result))


# ---------------------------------------------------------------- in the driver

def predicted(done: dict, atoms: int, key: str):
    """``key`` at ``atoms``, linear in N through the two largest sizes done (or proportional to one)."""
    points = sorted((n, r[key]) for n, r in done.items() if r.get("status") == "ok")[-2:]
    if not points:
        return None
    if len(points) == 1:
        return points[0][1] * atoms / points[0][0]
    (n1, y1), (n2, y2) = points
    return y2 + max(y2 - y1, 0.0) / (n2 - n1) * (atoms - n2)


def gate(done: dict, atoms: int, timeout: float, max_rss_mb: float):
    """Why a run at ``atoms`` is not started (a smaller size failed, or predicted too big), or None."""
    failed = [n for n, r in done.items() if r["status"].split(":")[0] not in ("ok", "skipped") and n < atoms]
    if failed:
        return f"skipped: failed at {min(failed):,} atoms ({done[min(failed)]['status'].split(':')[0]})"
    rss = predicted(done, atoms, "peak_rss_mb")
    if rss is not None and rss > max_rss_mb:
        return f"skipped: predicted peak RSS {rss / 1024:.1f} GB > limit {max_rss_mb / 1024:.1f} GB"
    ms = predicted(done, atoms, "median_ms")
    if ms is not None and (WARMUP + 1) * ms / 1e3 > timeout:
        return (f"skipped: predicted {(WARMUP + 1) * ms / 1e3:.0f} s for {WARMUP} warm-ups and 1 evaluation "
                f"> timeout {timeout:.0f} s")
    return None


def derived(row: dict) -> dict:
    """Per-atom time (µs), ns/day at 1 fs per evaluation, RSS the evaluations add (MB)."""
    if row.get("status") == "ok":
        row["eval_rss_mb"] = row["peak_rss_mb"] - row["rss_before_eval_mb"]
        row["us_per_atom"] = 1e3 * row["median_ms"] / row["atoms"]
        row["ns_per_day"] = 86.4 / row["median_ms"]  # (8.64e7 ms/day / ms per step) x 1e-6 ns per step
    return row


def table(results: dict) -> str:
    """The Markdown tables: runs, ratios to CGAA, the profile."""
    models = [m for m in MODELS if m in results["runs"]]
    lines = [f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, {results['threads']} "
             f"threads, OMP_WAIT_POLICY={results['worker_env']['OMP_WAIT_POLICY']}; torch "
             f"{results['versions']['torch']}, OpenMM {results['versions']['openmm']}. "
             "ms: median energy+forces evaluation; ns/day at 1 fs per evaluation; RSS: peak of the "
             "whole process (Python, libraries and model included); evaluation: what the evaluations add "
             "to the RSS of the loaded model and Context; load: the machine's 1-minute load "
             "average at the end of the run (other jobs share its cores).", "",
             "| atoms | model | ms / evaluation | µs / atom | ns/day | peak RSS (MB) | evaluation (MB) | repeats "
             "| load | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size in results["sizes"]:
        for m in models:
            r = results["runs"][m].get(str(size))
            if r is None:
                continue
            n = r.get("atoms", size)
            if r["status"] == "ok":
                load = f"{r['load_average']:.1f}" if "load_average" in r else ""
                lines.append(f"| {n:,} | {LABELS[m]} | {r['median_ms']:.4g} | {r['us_per_atom']:.3g} | "
                             f"{r['ns_per_day']:.3g} | {r['peak_rss_mb']:.0f} | {r['eval_rss_mb']:.0f} | "
                             f"{len(r['times_ms'])} | {load} | ok |")
            else:
                lines.append(f"| {n:,} | {LABELS[m]} | | | | | | | | {r['status']} |")
    others = [m for m in models if m != "cgaa"]
    memory = [m for m in others if m != "tip3p"]
    lines += ["", "Ratios at the same size: time, peak RSS and evaluation memory of each model over CGAA's.", "",
              "| atoms | " + " | ".join(f"{LABELS[m]} / CGAA time" for m in others) + " | "
              + " | ".join(f"{LABELS[m]} / CGAA {what}" for what in ("RSS", "evaluation memory") for m in memory)
              + " |", "|" + " --- |" * (1 + len(others) + 2 * len(memory))]
    for size in results["sizes"]:
        base = results["runs"].get("cgaa", {}).get(str(size), {})
        if base.get("status") != "ok":
            continue
        cells = []
        for key in ("median_ms", "peak_rss_mb", "eval_rss_mb"):
            for m in (others if key == "median_ms" else memory):
                r = results["runs"].get(m, {}).get(str(size), {})
                cells.append(f"{r[key] / base[key]:.3g}" if r.get("status") == "ok" else "n/a")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    prof = results.get("profile")
    if prof and "parts" in prof:
        lines += ["", f"Profile of one CGAA evaluation, {prof['atoms']} atoms ({prof['grains']} grains, "
                      f"{prof['intra_pairs']:,} intra-grain pairs): {prof['how']}. Forward "
                      f"{prof['forward_ms']:.0f} ms, backward {prof['backward_ms']:.0f} ms.", "",
                  "| part | forward (ms) | backward (ms) | total (ms) | share |", "| --- | --- | --- | --- | --- |"]
        whole = sum(p["total_ms"] for p in prof["parts"])
        for p in prof["parts"]:
            lines.append(f"| {p['part']} | {p['forward_ms']:.1f} | {p['backward_ms']:.1f} | {p['total_ms']:.1f} | "
                         f"{100 * p['total_ms'] / whole:.0f} % |")
        lines += ["", "| top op (self CPU) | ms | calls |", "| --- | --- | --- |"]
        lines += [f"| `{o['op']}` | {o['self_cpu_ms']:.1f} | {o['calls']} |" for o in prof["top_ops"]]
    elif prof:
        lines += ["", f"Profile: {prof['status']}"]
    notes = [f"* {LABELS[m]}: {r['notes']}; {r['how']}." for m in models
             for r in [next((x for x in results["runs"][m].values() if x.get("status") == "ok"), None)] if r]
    return "\n".join(lines + [""] + notes) + "\n"


def plot(results: dict, path: str) -> None:
    """Log-log time and peak RSS against atoms, O(N) lines through each model's smallest size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "median_ms", "ms per energy+forces evaluation"),
                           (axes[1], "peak_rss_mb", "peak RSS (MB)")):
        for m, runs in results["runs"].items():
            ok = sorted((r["atoms"], r[key]) for r in runs.values() if r.get("status") == "ok")
            if ok:
                ax.loglog(*zip(*ok), marker="o", label=LABELS[m])
                n0, y0 = ok[0]
                if key == "median_ms":
                    n = np.array([n0, max(results["sizes"])])
                    ax.loglog(n, y0 * n / n0, ls=":", color=ax.lines[-1].get_color(), lw=1)
        ax.set_xlabel("atoms")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    limits = {r["limits"]["max_rss_mb"] for runs in results["runs"].values() for r in runs.values() if "limits" in r}
    for limit in sorted(limits):
        axes[1].axhline(limit, ls="--", color="grey", lw=1)
        axes[1].annotate(f"run limit {limit / 1024:.0f} GB", (axes[1].get_xlim()[0], limit), fontsize=8,
                         textcoords="offset points", xytext=(4, -11), color="grey")
    axes[0].plot([], [], ls=":", color="k", lw=1, label="O(N) from the smallest size")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"EC/EMC boxes, OpenMM CPU, {results['threads']} threads ({results['machine']['cpu']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: dict, out_dir: str) -> None:
    """scaling.json, scaling.md and scaling.png in ``out_dir``; regenerates the last two from the first."""
    with open(os.path.join(out_dir, "scaling.json.tmp"), "w") as f:
        json.dump(results, f, indent=1)
    os.replace(os.path.join(out_dir, "scaling.json.tmp"), os.path.join(out_dir, "scaling.json"))
    with open(os.path.join(out_dir, "scaling.md"), "w") as f:
        f.write("# Scaling with system size\n\n" + "".join(f"    python benchmarks/scaling.py {' '.join(c)}\n"
                                                        for c in results["commands"])
                + "\n![time and memory against atoms](scaling.png)\n\n" + table(results))
    plot(results, os.path.join(out_dir, "scaling.png"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(TILINGS), choices=sorted(TILINGS),
                        metavar="ATOMS", help=f"atom counts, of {sorted(TILINGS)}")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--model", default="carbonates-xtb", help="CGAA model file or shipped name (cgaa, atom)")
    parser.add_argument("--threads", type=int, default=2, help="OpenMM CPU and torch threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="time spent repeating after warm-up, per run")
    parser.add_argument("--timeout", type=float, default=1500.0, help="s per run (setup included)")
    parser.add_argument("--max-rss-gb", type=float, help="per run; default 60 %% of MemAvailable at start")
    parser.add_argument("--mace-venv", default=os.path.join(HERE, ".venv-mace"))
    parser.add_argument("--quick", action="store_true",
                        help="1 evaluation, no warm-up, no MACE venv build (the test: outputs, not timings)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="add to the existing scaling.json (same threads), replacing only the runs measured now")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--worker", choices=(*MODELS, "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--tiles", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    import openmm
    import torch
    max_rss = 1024 * args.max_rss_gb if args.max_rss_gb else 0.6 * available_mb()
    logs = os.path.join(HERE, "runs", "scaling", "quick" if args.quick else "full")
    os.makedirs(logs, exist_ok=True)
    os.makedirs(args.output_dir, exist_ok=True)
    sizes = sorted(set(args.sizes))
    command = sys.argv[1:] if argv is None else list(argv)
    previous = os.path.join(args.output_dir, "scaling.json")
    if args.merge and os.path.exists(previous):
        with open(previous) as f:
            results = json.load(f)
        if results["threads"] != args.threads:
            parser.error(f"--merge: {previous} was measured with {results['threads']} threads")
        results["commands"].append(command)
        results["sizes"] = sorted(set(results["sizes"]) | set(sizes))
        for runs in results["runs"].values():
            for row in runs.values():
                derived(row)
    else:
        results = dict(commands=[command], sizes=sizes, threads=args.threads, worker_env=WORKER_ENV,
                       machine=dict(cpu=cpu_model(), cores=os.cpu_count(), mem_available_gb=available_mb() / 1024),
                       versions=dict(torch=torch.__version__, openmm=openmm.__version__), runs={})
    results["tilings"] = {str(n): TILINGS[n] for n in results["sizes"]}
    for m in args.models:
        results["runs"].setdefault(m, {})
    python = {m: sys.executable for m in args.models}
    for m in set(MACE_SIZES) & set(args.models):
        python[m] = mace_python(args.mace_venv, build=not args.quick)

    def measure(m: str, size: int) -> dict:
        done = {int(k): v for k, v in results["runs"][m].items()}
        reason = gate(done, size, args.timeout, max_rss)
        if python[m] is None:
            reason = f"skipped: no MACE venv at {args.mace_venv} (--quick does not build it)"
        if reason:
            return dict(status=reason, atoms=size)
        command = [python[m], os.path.abspath(__file__), "--worker", m, "--tiles", *map(str, TILINGS[size]),
                   "--threads", str(args.threads), "--seconds", str(args.seconds),
                   "--model", args.model] + ["--quick"] * args.quick
        return dict(dict(atoms=size, limits=dict(max_rss_mb=max_rss, timeout_s=args.timeout)),
                    **launch(command, os.path.join(logs, f"{m}_{size}.log"), args.timeout, max_rss,
                             threads=args.threads))
    # Timed runs one at a time; --quick (no timings) runs every model of a size, and the profile, at once.
    with ThreadPoolExecutor(len(args.models) + 1 if args.quick else 1) as pool:
        profile = None
        if not args.no_profile:
            command = [sys.executable, os.path.abspath(__file__), "--worker", "profile", "--tiles", "1", "1", "1",
                       "--threads", str(args.threads), "--model", args.model] + ["--quick"] * args.quick
            profile = partial(launch, command, os.path.join(logs, "profile.log"), args.timeout, max_rss,
                              threads=args.threads)
            profile = pool.submit(profile) if args.quick else profile
        for size in sizes:
            for m, row in zip(args.models, list(pool.map(partial(measure, size=size), args.models))):
                results["runs"][m][str(size)] = derived(row)
                print(f"{size:>6} atoms  {m:<5}  " + (f"{row['median_ms']:.1f} ms, {row['peak_rss_mb']:.0f} MB"
                                                      if row["status"] == "ok" else row["status"]), flush=True)
            write(results, args.output_dir)
        if profile is not None:
            results["profile"] = profile.result() if args.quick else profile()
            write(results, args.output_dir)
    print(table(results))


if __name__ == "__main__":
    main()
