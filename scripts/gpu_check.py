#!/usr/bin/env python3
"""The GPU check: CGAA against MACE on one GPU, in one command of a few minutes (issue 32).

On the device machine (``scripts/gpu_run.sh`` installs the carried wheels, then runs)::

    python scripts/gpu_check.py --output $OUT/gpu.json

and here, on the CPU, the same code on the smallest box (the test suite runs this)::

    python scripts/gpu_check.py --cpu --tiny --output /tmp/gpu.json

What it does, in order, each part recorded in the JSON (``--output``) and printed as a table:

1. the device: name, memory, driver, CUDA, and the torch / e3nn / numpy / openmm versions;
2. both shipped models as the module a ``TorchForce`` runs (``torch.jit.script`` of the
   ``CGAAEnergyAndForces`` around the compiled core that ``createForce`` makes, saved, loaded on
   the CPU and moved with ``.to(device)`` as openmm-torch does), float32 on the device, against
   the same module in float64 on the CPU: energy and forces of a periodic carbonate frame and its
   rattled copy (``--prepare`` writes both from ``../shared/data/carbonates``);
3. energy + forces timed (median of ``--repeats`` calls after ``--warmup``, synchronised) on the
   bundled 800-atom EC/EMC box tiled to 800, 9,600, 100,000 and 1,040,000 atoms: ms per call,
   ns/day at 1 fs and at the HMR timestep (2 fs), peak device memory; the largest sizes again
   with groups of ``--large-groups`` atoms embedded at once (fewer, larger kernels on a GPU);
4. MACE tutorial size and medium (``scripts/gpu_mace.py``, in its own interpreter: mace-torch
   0.3.16 needs e3nn 0.4.4), timed the same way on the same boxes;
5. OpenMM: 1,000 NPT steps (2 fs, H 3 Da, Langevin, Monte Carlo barostat) of the 9,600-atom box
   with the TorchForce on the CUDA platform, or exactly why that could not run.

A size whose predicted time would overrun ``--budget-s`` (the whole run's) is skipped, and one
that runs out of device memory ends that model's larger sizes: both are recorded, not dropped.
"""
import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "build", "gpu")
BOX = os.path.join(ROOT, "example_systems", "ecemc.pdb")
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "carbonates"))
#: atoms -> copies of the 800-atom box along a, b, c
TILINGS = {800: (1, 1, 1), 9600: (2, 2, 3), 100000: (5, 5, 5), 1040000: (10, 10, 13)}
MODELS = ("carbonates-xtb-fast", "carbonates-xtb")
MACE_SIZES = ("tutorial", "medium")
#: frames checked against float64 on the CPU: file in ../shared/data/carbonates -> bundle name
FRAMES = {"solvent_liquid.xyz": "liquid", "liquid_rattled_frame.xyz": "rattled"}
HMR_FS = 2.0
#: CUDA float32 against CPU float64: largest force difference over largest force (the issue's)
FORCE_RTOL = 1e-4
NPT_STEPS = 1000


def ns_per_day(ms: float, fs: float) -> float:
    """Simulated ns per day at ``ms`` per step of ``fs`` femtoseconds."""
    return 86400e3 / ms * fs * 1e-6


def versions() -> dict:
    """Versions of the libraries the check runs on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in ("torch", "e3nn", "numpy", "openmm", "openmmtorch", "mace-torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def device_info(device: torch.device) -> dict:
    """Name, memory (GiB), driver and CUDA version of ``device``, the CPU and the versions."""
    info = dict(device=str(device), cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                python=platform.python_version(), versions=versions())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count,
                    cuda=torch.version.cuda)
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            info["driver"] = f"unknown ({error})"
    else:
        info["name"] = info["cpu"]
    return info


def imported() -> list:
    """The top-level packages imported so far, the standard library's apart: what the device
    machine must have or be carried (``scripts/gpu_wheels.txt``)."""
    return sorted({name.split(".")[0] for name in sys.modules} - set(sys.stdlib_module_names)
                  - {"__main__", "__mp_main__"})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call, device: torch.device, warmup: int, repeats: int) -> dict:
    """Median and all times (ms) of ``repeats`` synchronised calls after ``warmup`` ones, and the
    peak device memory (MiB) over all of them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        call()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(1e3 * (time.perf_counter() - start))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return dict(median_ms=statistics.median(times), times_ms=times, peak_memory_mib=peak)


def out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


class Box:
    """The bundled EC/EMC box for a potential: species, grain and positions (nm) of its 800
    atoms, as ``createForce`` reads them from the PDB's residues, and its box (nm)."""

    def __init__(self, potential, path: str = BOX):
        from openmm import app, unit
        pdb = app.PDBFile(path)
        self.topology = pdb.topology
        self.species, self.grain, self.names, _ = potential._grains(pdb.topology, "residue", False)
        self.positions = np.array(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
        self.numbers = np.array([atom.element.atomic_number for atom in pdb.topology.atoms()])

    def tiled(self, tiles) -> tuple:
        """``(species, grain, positions (nm), box (nm))`` of the box repeated ``tiles`` times."""
        shifts = [np.array([i, j, k]) @ self.box for i in range(tiles[0]) for j in range(tiles[1])
                  for k in range(tiles[2])]
        n_grains = int(self.grain.max()) + 1
        species = self.species.repeat(len(shifts))
        grain = torch.cat([self.grain + c * n_grains for c in range(len(shifts))])
        positions = np.concatenate([self.positions + s for s in shifts])
        return species, grain, positions, self.box * np.array(tiles)[:, None]


def force_module(potential, species, grain, dtype: torch.dtype, device: torch.device, group_atoms: int = 1024):
    """The module a ``TorchForce`` of ``potential`` runs for these atoms (periodic, precision
    ``dtype``): scripted as ``createForce`` scripts it, serialised, loaded on the CPU and moved
    to ``device`` with ``.to`` (openmm-torch's CUDA kernel does the same in C++). ``group_atoms``:
    the most atoms whose grains are embedded at once (``createForce``'s is 1024)."""
    from cgaa_openmm.potential import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
    from cgaa_openmm.torchforce import CGAAEnergyAndForces, core_kind, tensor_constants
    from cgaa_openmm.groups import grain_topology
    kind = core_kind(grain_topology(species, grain, True, group_atoms))
    module = CGAAEnergyAndForces(potential.compiledCore(dtype, kind), species, grain, True, ANGSTROM_PER_NM,
                                 KJ_PER_MOL_PER_EV, group_atoms=group_atoms)
    saved = torch.jit.script(module).save_to_buffer()
    loaded = torch.jit.load(io.BytesIO(saved), map_location="cpu")
    if tensor_constants(loaded):
        raise RuntimeError(f"the compiled module holds tensors as constants {tensor_constants(loaded)[:3]}..., "
                           f"which .to(device) would leave on the CPU")
    try:
        return loaded.to(device)
    except AssertionError:
        # Python's .to of a loaded ScriptModule can refuse where C++'s Module::to (openmm-torch's)
        # does not; with no tensor constants, loading onto the device gives the same module.
        return torch.jit.load(io.BytesIO(saved), map_location=device)


def check_frames(potential, bundle: str, device: torch.device) -> dict:
    """Energy (kJ/mol) and forces (kJ/mol/nm) of the bundled frames on ``device`` in float32
    against the CPU in float64."""
    results = {}
    for name in FRAMES.values():
        path = os.path.join(bundle, f"{name}.pdb")
        if not os.path.exists(path):
            results[name] = dict(status=f"no {path}: run --prepare on a machine with ../shared/data")
            continue
        frame = Box(potential, path)
        positions, box = torch.tensor(frame.positions), torch.tensor(frame.box)
        e64, f64 = force_module(potential, frame.species, frame.grain, torch.float64, torch.device("cpu"))(
            positions, box)
        e32, f32 = force_module(potential, frame.species, frame.grain, torch.float32, device)(
            positions.float().to(device), box.float().to(device))
        largest = float(f64.abs().max())
        difference = float((f32.double().cpu() - f64).abs().max())
        results[name] = dict(atoms=len(frame.numbers), energy_float64=float(e64), energy_device=float(e32),
                             energy_rel=abs(float(e32) - float(e64)) / abs(float(e64)), largest_force=largest,
                             force_max_difference=difference, force_rel=difference / largest,
                             ok=bool(difference <= FORCE_RTOL * largest))
    return results


def time_module(potential, species, grain, positions, cell, device, args, group_atoms: int = 1024) -> dict:
    """Timing of the float32 force module of ``potential`` on one box (positions and cell in nm)."""
    start = time.perf_counter()
    module = force_module(potential, species, grain, torch.float32, device, group_atoms)
    setup = time.perf_counter() - start
    x = torch.tensor(positions, dtype=torch.float32, device=device)
    b = torch.tensor(cell, dtype=torch.float32, device=device)
    row = timed(lambda: module(x, b), device, args.warmup, args.repeats)
    energy, forces = module(x, b)
    row.update(status="ok", atoms=len(positions), setup_s=setup, energy_kj_mol=float(energy),
               net_force=float(forces.double().sum(0).norm()), largest_force=float(forces.abs().max()),
               ns_day_1fs=ns_per_day(row["median_ms"], 1.0), ns_day_hmr=ns_per_day(row["median_ms"], HMR_FS),
               us_per_atom=1e3 * row["median_ms"] / len(positions))
    return row


def time_cgaa(potential, box: Box, sizes, device, args, deadline: float, group_atoms: int = 1024) -> dict:
    """Timings of the float32 force module on the tiled boxes, smallest first."""
    rows, last = {}, None
    for atoms in sizes:
        if last is not None:
            predicted = last["median_ms"] * atoms / last["atoms"] * (args.warmup + args.repeats) / 1e3
            if time.time() + predicted > deadline:
                rows[atoms] = dict(status=f"skipped: about {predicted:.0f} s predicted, past the budget")
                continue
        try:
            rows[atoms] = last = time_module(potential, *box.tiled(TILINGS[atoms]), device, args, group_atoms)
        except Exception as error:  # recorded: an out-of-memory ends the larger sizes
            rows[atoms] = dict(status="out of memory" if out_of_memory(error) else f"failed: {error!r}"[:2000])
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if out_of_memory(error):
                for larger in sizes[sizes.index(atoms) + 1:]:
                    rows[larger] = dict(status=f"skipped: {atoms} atoms ran out of memory")
                break
    return rows


def time_mace(size: str, box: Box, sizes, device, args, deadline: float, work: str) -> dict:
    """Timings of MACE (``scripts/gpu_mace.py`` in the interpreter of ``--mace-path``) on the tiled boxes."""
    rows = {}
    env = dict(os.environ, PYTHONPATH=args.mace_path or "", PYTHONUNBUFFERED="1")
    for atoms in sizes:
        remaining = deadline - time.time()
        if remaining < 20:
            rows[atoms] = dict(status="skipped: the budget is spent")
            continue
        _, _, positions, cell = box.tiled(TILINGS[atoms])
        system = os.path.join(work, f"box-{atoms}.npz")
        if not os.path.exists(system):
            np.savez(system, positions=10.0 * positions, numbers=np.tile(box.numbers, len(positions) // len(box.numbers)),
                     cell=10.0 * cell)
        out = os.path.join(work, f"mace-{size}-{atoms}.json")
        command = [sys.executable, os.path.join(ROOT, "scripts", "gpu_mace.py"), "--size", size, "--system", system,
                   "--device", device.type, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                   "--output", out]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=remaining)
            row = json.load(open(out)) if os.path.exists(out) else dict(
                status=f"failed (exit {done.returncode}): {done.stderr[-1500:]}")
        except subprocess.TimeoutExpired:
            row = dict(status="skipped: killed at the end of the budget")
        if row.get("max_memory_allocated_bytes") is not None:
            row["peak_memory_mib"] = row["max_memory_allocated_bytes"] / 2**20
        if row.get("status") == "ok":
            row.update(ns_day_1fs=ns_per_day(row["median_ms"], 1.0), ns_day_hmr=ns_per_day(row["median_ms"], HMR_FS),
                       us_per_atom=1e3 * row["median_ms"] / atoms)
        rows[atoms] = row
        if row.get("status") != "ok":
            for larger in sizes[sizes.index(atoms) + 1:]:
                rows[larger] = dict(status=f"skipped: {atoms} atoms did not run ({row.get('status', '?')[:80]})")
            break
    return rows


def run_openmm(potential, box: Box, tiles, steps: int, platform_name: str) -> dict:
    """``steps`` NPT steps of the tiled box with the CGAA TorchForce on ``platform_name``, or why not."""
    try:
        import openmm
        import openmmtorch  # noqa: F401  (the TorchForce plugin; import fails when built for another torch)
        from openmm import app, unit
    except Exception as error:
        return dict(status=f"not run: openmm-torch does not import here: {error!r}"[:2000])
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if platform_name not in names:
        return dict(status=f"not run: OpenMM has no {platform_name} platform (platforms: {names}; plugin load "
                           f"failures: {openmm.Platform.getPluginLoadFailures()})"[:3000])
    try:
        topology = app.Topology()
        _, _, tiled_positions, cell = box.tiled(tiles)
        copies = len(tiled_positions) // len(box.positions)
        for _ in range(copies):
            atoms = {}
            for residue in box.topology.residues():
                new = topology.addResidue(residue.name, topology.addChain())
                for atom in residue.atoms():
                    atoms[atom] = topology.addAtom(atom.name, atom.element, new)
            for a, b in box.topology.bonds():
                topology.addBond(atoms[a], atoms[b])
        topology.setPeriodicBoxVectors(cell * unit.nanometer)
        system = potential.createSystem(topology, hydrogenMass=3.0 * unit.amu)
        system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 298.0 * unit.kelvin, 25))
        integrator = openmm.LangevinMiddleIntegrator(298.0 * unit.kelvin, 1.0 / unit.picosecond,
                                                     HMR_FS * unit.femtosecond)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform_name))
        context.setPeriodicBoxVectors(*cell)
        context.setPositions(tiled_positions)
        context.setVelocitiesToTemperature(298.0 * unit.kelvin, 1)
        integrator.step(1)
        context.getState(getEnergy=True)
        start = time.perf_counter()
        integrator.step(steps)
        state = context.getState(getEnergy=True)
        seconds = time.perf_counter() - start
        volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
        mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
        return dict(status="ok", platform=platform_name, atoms=system.getNumParticles(), steps=steps,
                    ms_per_step=1e3 * seconds / steps, ns_day=ns_per_day(1e3 * seconds / steps, HMR_FS),
                    potential_kj_mol=state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                    density_g_ml=mass / 6.02214076e23 / (volume * 1e-21))
    except Exception as error:
        return dict(status=f"failed: {error!r}"[:3000], traceback=traceback.format_exc()[-3000:])


def prepare(bundle: str) -> None:
    """Write the frames the check compares (PDB, one residue per molecule) from ../shared/data."""
    from ase.io import read
    from openmm import app

    from cgaa_openmm.grains import topology_from_atoms
    from training.data import bonded_molecules
    os.makedirs(bundle, exist_ok=True)
    for source, name in FRAMES.items():
        atoms = read(os.path.join(DATA, source), index=0)
        atoms.arrays["molID"] = bonded_molecules(atoms)
        with open(os.path.join(bundle, f"{name}.pdb"), "w") as out:
            app.PDBFile.writeFile(topology_from_atoms(atoms), atoms.positions, out, keepIds=True)  # Å
        print(f"wrote {bundle}/{name}.pdb ({len(atoms)} atoms)")


def table(results: dict) -> str:
    """The timings as a Markdown table: ms per call, ns/day at 1 fs and 2 fs, peak memory."""
    lines = ["| model | atoms | ms / call | ns/day at 1 fs | at 2 fs (HMR) | µs/atom | peak memory (MiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in results["timings"].items():
        for atoms, row in rows.items():
            if row.get("status") == "ok":
                peak = row.get("peak_memory_mib")
                lines.append(f"| {name} | {atoms} | {row['median_ms']:.2f} | {row['ns_day_1fs']:.3f} | "
                             f"{row['ns_day_hmr']:.3f} | {row['us_per_atom']:.3f} | "
                             f"{'' if peak is None else f'{peak:.0f}'} |")
            else:
                lines.append(f"| {name} | {atoms} | {row.get('status', '?')[:100]} | | | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="gpu.json", help="JSON file of the results")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (the test of this script)")
    parser.add_argument("--tiny", action="store_true", help="the 800-atom box only, 1 warm-up and 2 timed calls, "
                                                           "10 MD steps")
    parser.add_argument("--sizes", type=int, nargs="+", choices=sorted(TILINGS), help="box sizes (atoms)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="CGAA models (shipped names or files)")
    parser.add_argument("--mace", nargs="*", default=list(MACE_SIZES), choices=MACE_SIZES, help="MACE sizes")
    parser.add_argument("--mace-path", default=os.environ.get("CGAA_MACE_PATH"),
                        help="folder holding mace-torch 0.3.16 and e3nn 0.4.4 (PYTHONPATH of the MACE worker)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before them")
    parser.add_argument("--large-groups", type=int, default=32768,
                        help="also time the largest sizes with groups of this many atoms (0: not)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--bundle", default=BUNDLE, help="folder of the frames (--prepare writes it)")
    parser.add_argument("--prepare", action="store_true", help="write the bundle's frames and stop")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.bundle)
        return 0
    start = time.time()
    deadline = start + args.budget_s
    if args.tiny:
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
    sizes = args.sizes or ([800] if args.tiny else sorted(TILINGS))
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: use --cpu", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    if args.cpu:
        torch.set_num_threads(1)
    from cgaa_openmm import CGAAPotential
    from cgaa_openmm.torchforce import plain_executor
    plain_executor()  # as createForce sets it for the thread that runs the TorchForce
    results = dict(device=device_info(device), settings=dict(vars(args), sizes=sizes), checks={}, timings={})
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    def save():
        results["seconds"] = time.time() - start
        results["imported"] = imported()
        with open(args.output, "w") as out:
            json.dump(results, out, indent=1)

    potentials, boxes = {}, {}
    for name in args.models:
        potentials[name] = potential = CGAAPotential.load(name)
        boxes[name] = box = Box(potential)
        try:
            results["checks"][name] = check_frames(potential, args.bundle, device)
        except Exception as error:
            results["checks"][name] = dict(status=f"failed: {error!r}"[:2000], traceback=traceback.format_exc()[-3000:])
        results["timings"][name] = time_cgaa(potential, box, sizes, device, args, deadline - 90 * len(args.mace))
        save()
    # The grain embedding runs group by group of grains; on a GPU, large groups mean fewer kernel
    # launches. The largest sizes again, with groups of --large-groups atoms.
    for name in args.models if args.large_groups else []:
        large = [atoms for atoms in sizes if atoms >= 100000] or sizes[-1:]
        results["timings"][f"{name} (groups of {args.large_groups} atoms)"] = time_cgaa(
            potentials[name], boxes[name], large, device, args, deadline - 90 * len(args.mace), args.large_groups)
        save()
    with tempfile.TemporaryDirectory() as work:
        for size in args.mace:
            if not args.mace_path:
                results["timings"][f"mace-{size}"] = {atoms: dict(status="not run: no --mace-path") for atoms in sizes}
                continue
            share = (deadline - 60 - time.time()) / max(1, len(args.mace) - args.mace.index(size))
            results["timings"][f"mace-{size}"] = time_mace(size, box, sizes, device, args, time.time() + share, work)
            save()
    tiles = TILINGS[800] if args.tiny else TILINGS[9600]
    results["openmm"] = run_openmm(potentials[args.models[0]], box, tiles, 10 if args.tiny else NPT_STEPS,
                                   "CPU" if args.cpu else "CUDA")
    save()
    print(json.dumps(dict(device=results["device"], checks=results["checks"], openmm=results["openmm"]), indent=1))
    print(table(results))
    ok = all(check.get("ok", True) for checks in results["checks"].values() for check in checks.values()
             if isinstance(check, dict))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
