"""Thermal frames of a single α-RDX cell from a model's own MD, for labelling (issue 31).

A single cell (10.67 Å across) is narrower than the two cutoffs an OpenMM box needs, so the MD
runs in ASE with :class:`training.calculator.CGAACalculator` (the training path, exact for cells at
least one cutoff wide): Langevin NVT at ``--temperature`` in the cell as given, no cut faces.
After ``--equilibrate`` steps, a frame every ``--interval`` steps is written with ``molID``,
``label_id`` (``PREFIX-STEP``) and ``temperature``, ready for ``cgaa-openmm label``, and with two
order parameters against the start crystal, as ``benchmarks/rdx_npt.py`` records them:
``centre_rmsd_A``, the RMS displacement of the molecular centres from their sites (nearest image,
drift removed), and ``orientation_p2``, <P2(u0 . u)> over every heavy atom's unit vector from its
molecule's centre (1: the molecules only vibrate; 0: random orientations).

The disordered phase (above the 478 K melting point) starts here too: ``--scale`` stretches the
cell by a linear factor, the molecules moved rigidly with it, and a high ``--temperature`` melts
the 8 molecules of one cell within picoseconds (a small periodic cell holds no grain boundary to
nucleate melting, so it needs more heating than the melting point).

    python example_systems/rdx_cell_md.py --model training/runs/rdx-xtb-v1.pt --temperature 450 \\
        --output cells-450.xyz
"""
import argparse
import os
import sys

import numpy as np
from ase import units
from ase.constraints import FixCom
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from openmm import app

from training.calculator import CGAACalculator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
from rdx_npt import Crystal  # noqa: E402  (benchmarks/, beside this folder)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model file or shipped name")
    parser.add_argument("--cell", default=os.path.join(HERE, "rdx-gfn2.pdb"), help="PDB of the cell (one residue per molecule)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="linear factor on the cell, molecules moved rigidly (1.04: volume +12 %%)")
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
    molecules = [np.flatnonzero(atoms.arrays["molID"] == m) for m in range(atoms.arrays["molID"].max() + 1)]
    centres = np.array([atoms.positions[m].mean(0) for m in molecules])
    for m, centre in zip(molecules, centres):
        atoms.positions[m] += (args.scale - 1.0) * centre
    atoms.set_cell(atoms.cell.array * args.scale, scale_atoms=False)
    pdb = app.PDBFile(args.cell)
    box_nm = np.diag(atoms.cell.array) / 10
    crystal = Crystal(pdb.topology, atoms.positions / 10, box_nm, atoms.get_masses())
    atoms.calc = CGAACalculator(args.model)
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())     # ASE's advice for small systems, in place of Langevin's fixcm
    dynamics = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                        friction=args.friction / (1000 * units.fs), rng=rng, fixcm=False)
    frames = []
    steps = args.equilibrate + args.interval * (args.frames - 1)
    for step in range(steps + 1):
        if step >= args.equilibrate and (step - args.equilibrate) % args.interval == 0:
            frame = atoms.copy()
            frame.calc = None
            frame.set_constraint()
            rmsd, p2 = crystal.order(atoms.positions / 10, box_nm)
            frame.info.update(label_id=f"{args.prefix}-{step:05d}", temperature=round(atoms.get_temperature(), 1),
                              centre_rmsd_A=round(rmsd, 3), orientation_p2=round(p2, 4))
            frames.append(frame)
            print(f"step {step}: {frame.info['temperature']} K, E_pot {atoms.get_potential_energy():.3f} eV, "
                  f"centres {rmsd:.2f} Å from their sites, <P2> {p2:.3f}", flush=True)
        if step < steps:
            dynamics.run(1)
    write(args.output, frames, format="extxyz")
    return frames


if __name__ == "__main__":
    main()
