#!/usr/bin/env python3
"""GPU smoke test: the EC/EMC box on the CUDA platform, checked against Reference and timed.

    python scripts/gpu_smoke.py                      # CUDA, mixed precision
    python scripts/gpu_smoke.py --platform CPU       # the same checks and timings on another platform

Builds ``CGAAPotential.load(model).createSystem`` for the bundled 800-atom box,
compares energy (kJ/mol) and forces (kJ/mol/nm) with the Reference platform,
times single evaluations (ms) and Langevin MD steps (ns/day), and prints
``torch.cuda.max_memory_allocated``. Exits 1 if the energy or forces disagree,
2 if the platform is not usable here (for CUDA: what is missing). See docs/gpu.md.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "example_systems", "ecemc.pdb")
#: Agreement with Reference. The total energy (about -3.7e6 kJ/mol for the box) is a float32 sum:
#: 1e-6 of it is a few float32 roundings. Forces: largest difference over largest force.
ENERGY_RTOL, FORCE_RTOL = 1e-6, 1e-4


def cuda_problems(openmm, torch):
    """What the CUDA path lacks here (empty when it can run)."""
    problems = []
    if not torch.cuda.is_available():
        problems.append(f"torch {torch.__version__} sees no CUDA device (it is built for CUDA {torch.version.cuda}: "
                        f"it needs an NVIDIA GPU and a driver for that CUDA version)")
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if "CUDA" not in names:
        failures = "".join(f"; plugin load failure: {f}" for f in openmm.Platform.getPluginLoadFailures()
                           if "CUDA" in f)
        problems.append(f"OpenMM has no CUDA platform (pip install 'openmm[cuda12]==8.4.0.post2'){failures}")
    plugins = os.environ.get("OPENMM_PLUGIN_DIR") or os.path.join(openmm.version.openmm_library_path, "plugins")
    if not os.path.exists(os.path.join(plugins, "libOpenMMTorchCUDA.so")):
        problems.append(f"openmm-torch has no CUDA kernels, no libOpenMMTorchCUDA.so in {plugins} "
                        f"(pip install 'openmmtorch[cuda12]==1.5')")
    return problems


def state_of(context, unit):
    """Energy (kJ/mol) and forces (kJ/mol/nm) of a context."""
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", default="CUDA", help="OpenMM platform to test (default CUDA)")
    parser.add_argument("--precision", default="mixed", help="Precision property where the platform has one")
    parser.add_argument("--model", default="carbonates-xtb", help="model file or shipped model name")
    parser.add_argument("--pdb", default=EXAMPLE, help="system to run (default: the bundled EC/EMC box)")
    parser.add_argument("--evaluations", type=int, default=20, help="timed energy+force evaluations")
    parser.add_argument("--steps", type=int, default=100, help="timed MD steps (0.5 fs, Langevin, 300 K)")
    args = parser.parse_args(argv)

    import torch
    import openmm
    from openmm import app, unit

    import cgaa_openmm  # noqa: F401  (loads the openmm-torch plugins after torch)
    from cgaa_openmm import CGAAPotential

    if args.platform == "CUDA":
        problems = cuda_problems(openmm, torch)
        if problems:
            print("gpu_smoke: CUDA is not available here:" + "".join(f"\n  - {p}" for p in problems)
                  + "\n(pip install -e '.[cuda12]' on a CUDA machine installs both plugins; see docs/gpu.md)",
                  file=sys.stderr)
            return 2
    try:
        platform = openmm.Platform.getPlatformByName(args.platform)
    except openmm.OpenMMException as error:
        print(f"gpu_smoke: platform {args.platform!r} is not available: {error}", file=sys.stderr)
        return 2
    properties = {"Precision": args.precision} if "Precision" in platform.getPropertyNames() else {}

    pdb = app.PDBFile(args.pdb)
    system = CGAAPotential.load(args.model).createSystem(pdb.topology)
    print(f"{args.pdb}: {system.getNumParticles()} atoms, model {args.model!r}, platform {args.platform} "
          f"{properties}, torch {torch.__version__}, OpenMM {openmm.__version__}", flush=True)

    reference = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    reference.setPositions(pdb.positions)
    ref_energy, ref_forces = state_of(reference, unit)
    del reference
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    context = openmm.Context(system, integrator, platform, properties)
    context.setPositions(pdb.positions)
    energy, forces = state_of(context, unit)
    de = abs(energy - ref_energy) / abs(ref_energy)
    df = np.abs(forces - ref_forces).max() / np.abs(ref_forces).max()
    print(f"vs Reference: energy {energy:.3f} vs {ref_energy:.3f} kJ/mol (relative {de:.2e}), "
          f"forces max |diff| / max |F| = {df:.2e}", flush=True)
    ok = de < ENERGY_RTOL and df < FORCE_RTOL

    for _ in range(2):                               # TorchScript profiles and optimises on first calls
        state_of(context, unit)
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.evaluations):
        context.setPositions(positions + rng.normal(scale=1e-4, size=positions.shape))
        state_of(context, unit)
    per_eval = (time.perf_counter() - start) / args.evaluations
    print(f"{args.evaluations} evaluations: {1000 * per_eval:.1f} ms each", flush=True)

    context.setPositions(pdb.positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(2)
    start = time.perf_counter()
    integrator.step(args.steps)
    context.getState(getEnergy=True)                 # waits for the last step
    seconds = time.perf_counter() - start
    simulated_ns = args.steps * integrator.getStepSize().value_in_unit(unit.nanosecond)
    print(f"{args.steps} MD steps: {1000 * seconds / args.steps:.1f} ms/step, "
          f"{simulated_ns * 86400 / seconds:.3f} ns/day", flush=True)
    if torch.cuda.is_available():
        print(f"torch.cuda.max_memory_allocated: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    else:
        print("torch.cuda.max_memory_allocated: n/a (no CUDA device)")
    if not ok:
        print(f"gpu_smoke: FAILED: {args.platform} disagrees with Reference (limits: energy {ENERGY_RTOL:g}, "
              f"forces {FORCE_RTOL:g} relative)", file=sys.stderr)
        return 1
    print("gpu_smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
