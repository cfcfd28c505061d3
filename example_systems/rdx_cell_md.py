"""Thermal frames of a single α-RDX cell from a model's own MD, for labelling (issue 31).

A single cell (10.67 Å across) is narrower than the two cutoffs an OpenMM box needs, so the MD
runs in ASE with :class:`training.calculator.CGAACalculator` (the training path, exact for cells at
least one cutoff wide): Langevin NVT at ``--temperature`` in the cell as given, no cut faces.
After ``--equilibrate`` steps, a frame every ``--interval`` steps is written with ``molID``,
``label_id`` (``PREFIX-STEP``) and ``temperature``, ready for ``cgaa-openmm label``.

    python example_systems/rdx_cell_md.py --model training/runs/rdx-xtb-v1.pt --temperature 450 \\
        --output cells-450.xyz
"""
import argparse
import os

import numpy as np
from ase import units
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from training.calculator import CGAACalculator

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model file or shipped name")
    parser.add_argument("--cell", default=os.path.join(HERE, "rdx-gfn2.pdb"), help="PDB of the cell (one residue per molecule)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--friction", type=float, default=5.0, help="1/ps")
    parser.add_argument("--equilibrate", type=int, default=120, help="steps before the first frame")
    parser.add_argument("--interval", type=int, default=40, help="steps between frames")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prefix", default="rdx-cell")
    parser.add_argument("--output", required=True, help="extended XYZ to write")
    args = parser.parse_args(argv)
    atoms = read(args.cell)
    atoms.arrays["molID"] = np.unique(atoms.arrays["residuenumbers"], return_inverse=True)[1]
    for key in ("occupancy", "bfactor", "residuenames", "atomtypes", "residuenumbers"):
        atoms.arrays.pop(key, None)
    atoms.pbc = True
    atoms.calc = CGAACalculator(args.model)
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                        friction=args.friction / (1000 * units.fs), rng=rng)
    frames = []
    steps = args.equilibrate + args.interval * (args.frames - 1)
    for step in range(steps + 1):
        if step >= args.equilibrate and (step - args.equilibrate) % args.interval == 0:
            frame = atoms.copy()
            frame.calc = None
            frame.info.update(label_id=f"{args.prefix}-{step:05d}", temperature=round(atoms.get_temperature(), 1))
            frames.append(frame)
            print(f"step {step}: {frame.info['temperature']} K, E_pot {atoms.get_potential_energy():.3f} eV", flush=True)
        if step < steps:
            dynamics.run(1)
    write(args.output, frames, format="extxyz")
    return frames


if __name__ == "__main__":
    main()
