"""First RDX training configurations: strained and rattled copies of the α-RDX cell, to label.

    python example_systems/rdx_frames.py --cell example_systems/rdx-gfn2.pdb --count 60 \\
        --output training/datasets/rdx/crystal-strained.xyz
    cgaa-openmm label training/datasets/rdx/crystal-strained.xyz training/datasets/rdx/crystal-strained-gfn2.xyz

The bootstrap of the RDX data (issue 31): before any model exists to run MD, configurations come
from the crystal itself. Each frame deforms the cell by a random symmetric strain (diagonal
uniform in ±``--strain``, off-diagonal in ±``--shear``) and moves every molecule with it as a rigid
body (its centre follows the strain, as a barostat moves molecules; ``--affine`` strains the
molecules too), then displaces every atom by a Gaussian of ``--rattle`` Å per component. So the
frames span the stresses that an anisotropic barostat meets; the model's own MD (300 K, 450 K,
melt) adds thermal configurations in the following rounds. ``--tension`` draws expansions
larger than ``--strain`` (molecular layers pulled apart): a model that has seen only the crystal
may find separated layers lower in energy than the crystal (rdx-xtb v2 did, see docs/rdx.md).
``--relaxation JSON`` instead rebuilds ``--count`` cells along a relaxation path of
``relax_rdx.py`` (a model's own minimum search), to label where the model went wrong. On the relaxed cell, 60 rigid frames
gave pressures from 0 to 6.4 GPa and 60 affine ones from -6.7 to +16.5 GPa; the 0.05 Å rattle of
both gives forces far above thermal ones (RMS 2.9 and 3.1 eV/Å).

Writes an extended XYZ (positions Å, cell, pbc, per-atom ``molID`` from the PDB's residues, and
``label_id``, ``config_type``, the strain in ``info``), for ``cgaa-openmm label``.
"""
import argparse
import os

import numpy as np
from ase import Atoms
from ase.io import write
from openmm import app, unit

HERE = os.path.dirname(os.path.abspath(__file__))


def read_cell(path: str) -> Atoms:
    """The PDB's atoms with their cell and a ``molID`` per atom (its residue)."""
    pdb = app.PDBFile(path)
    box = pdb.topology.getPeriodicBoxVectors()
    if box is None:
        raise SystemExit(f"{path} has no CRYST1 box")
    atoms = Atoms([a.element.symbol for a in pdb.topology.atoms()],
                  positions=pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom),
                  cell=np.array(box.value_in_unit(unit.angstrom)), pbc=True)
    atoms.arrays["molID"] = np.array([a.residue.index for a in pdb.topology.atoms()])
    return atoms


def strained_frames(atoms: Atoms, count: int, strain: float, shear: float, rattle: float, seed: int,
                    prefix: str = "rdx-strained", affine: bool = False, tension: float = None):
    """``count`` copies of ``atoms`` under random symmetric strains (diagonal in [-strain, tension],
    tension defaults to strain), molecules moved rigidly (or, with ``affine``, strained with the
    cell), rattled (see the module)."""
    tension = strain if tension is None else tension
    molecules = atoms.arrays["molID"]
    centres = np.array([atoms.positions[molecules == m].mean(0) for m in range(molecules.max() + 1)])[molecules]
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        epsilon = np.diag(rng.uniform(-strain, tension, 3))
        off = rng.uniform(-shear, shear, 3)
        epsilon[0, 1] = epsilon[1, 0] = off[0]
        epsilon[0, 2] = epsilon[2, 0] = off[1]
        epsilon[1, 2] = epsilon[2, 1] = off[2]
        deformation = np.eye(3) + epsilon
        frame = atoms.copy()
        frame.set_cell(atoms.cell.array @ deformation, scale_atoms=False)
        moved = atoms.positions @ deformation if affine else atoms.positions - centres + centres @ deformation
        frame.positions = moved + rng.normal(0.0, rattle, atoms.positions.shape)
        kind = "crystal-affine" if affine else "crystal-expanded" if tension > strain else "crystal-strained"
        frame.info.update(label_id=f"{prefix}-{k:05d}", config_type=kind,
                          strain=" ".join(f"{v:.5f}" for v in epsilon[np.triu_indices(3)]))
        frames.append(frame)
    return frames


def relaxation_frames(path: str, count: int, rattle: float, seed: int, prefix: str) -> list:
    """``count`` cells along a relaxation path (``relax_rdx.py``'s JSON, evaluations evenly spaced
    from the first to the last), rebuilt from their cell lengths and asymmetric-unit coordinates,
    one ``molID`` per molecule, rattled by ``rattle`` Å: where a model's own minimum search went."""
    import json
    from build_rdx import read_asymmetric_unit
    from relax_rdx import PbcaCell
    with open(path) as file:
        history = [step for step in json.load(file)["history"] if "asymmetric_fractional" in step]
    if len(history) < count:
        raise SystemExit(f"{path}: {len(history)} evaluations with coordinates, fewer than --count {count} "
                         f"(relax again with this relax_rdx.py: it keeps every evaluation's coordinates)")
    _, elements, fractional = read_asymmetric_unit()
    cell = PbcaCell(elements, fractional)
    rng = np.random.default_rng(seed)
    frames = []
    for k in np.linspace(0, len(history) - 1, count).round().astype(int):
        frame = cell.atoms(np.array(history[k]["cell_A"]), np.array(history[k]["asymmetric_fractional"]))
        frame.positions = frame.positions + rng.normal(0.0, rattle, frame.positions.shape)
        frame.info.update(label_id=f"{prefix}-{k:05d}", config_type="relaxation-path", evaluation=int(k))
        frames.append(frame)
    return frames


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default=os.path.join(HERE, "rdx.pdb"),
                        help="PDB of the cell (default: the experimental one; use rdx-gfn2.pdb once relaxed)")
    parser.add_argument("--output", required=True, help="extended XYZ to write")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--strain", type=float, default=0.03, help="largest diagonal strain")
    parser.add_argument("--tension", type=float, help="largest diagonal expansion (default: --strain); e.g. "
                        "0.5 pulls molecular layers apart, where a model trained near the crystal has no data")
    parser.add_argument("--shear", type=float, default=0.02, help="largest off-diagonal strain")
    parser.add_argument("--rattle", type=float, default=0.05, help="Å, Gaussian displacement per component")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prefix", default="rdx-strained", help="label_id prefix")
    parser.add_argument("--affine", action="store_true", help="strain the molecules with the cell")
    parser.add_argument("--relaxation", help="instead: cells along this relax_rdx.py JSON's path")
    args = parser.parse_args(argv)
    if args.relaxation:
        frames = relaxation_frames(args.relaxation, args.count, args.rattle, args.seed, args.prefix)
    else:
        frames = strained_frames(read_cell(args.cell), args.count, args.strain, args.shear, args.rattle, args.seed,
                                 args.prefix, args.affine, args.tension)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    write(args.output, frames, format="extxyz")
    print(f"wrote {len(frames)} frames of {len(frames[0])} atoms to {args.output}")
    return frames


if __name__ == "__main__":
    main()
