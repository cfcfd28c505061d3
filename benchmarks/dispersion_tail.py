"""What a finite cutoff leaves out of GFN2-xTB's dispersion in a liquid box: energy and pressure.

    python benchmarks/dispersion_tail.py [PDB] [--cutoffs 6 8 10 12] [--output benchmarks/results/dispersion_tail.json]

GFN2-xTB's dispersion is D4 (two-body, Becke-Johnson damping, s8 = 2.7, a1 = 0.52, a2 = 5.0; the
three-body term is left out here). A model with a 6 Å grain cutoff cannot learn the part of it that
comes from farther away. For each real-space cutoff r_c this evaluates the periodic D4 two-body
energy of the box (default: the bundled EC/EMC liquid) with ``dftd4`` and reports the tail,
E(all pairs) - E(pairs within r_c), per atom, and the pressure it makes, -dE_tail/dV, from a
central difference of boxes scaled by 1 +- 1 % with every molecule moved rigidly (as a
Monte Carlo barostat moves them). Needs ``pip install dftd4==4.3.1``. Units: Å, eV, bar.
"""
import argparse
import json
import os

import mdtraj as md
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BOHR = 0.529177210903        # Å
HARTREE = 27.211386245988    # eV
EV_PER_A3_IN_BAR = 1.602176634e6
FULL = 60.0                  # Å: the "all pairs" real-space cutoff (the D4 tail beyond it is < 1e-4 eV here)


def rigidly_scaled(positions: np.ndarray, box: np.ndarray, molecule: np.ndarray, scale: float):
    """Positions and box with every molecule's centre scaled by ``scale`` and its shape kept."""
    out = positions.copy()
    for m in np.unique(molecule):
        members = molecule == m
        centre = positions[members].mean(0)
        out[members] += (scale - 1.0) * centre
    return out, box * scale


def d4_energy(numbers, positions, box, cutoff: float) -> float:
    """Periodic D4 two-body energy (eV) with GFN2-xTB's damping, pairs within ``cutoff`` Å."""
    from dftd4.interface import DampingParam, DispersionModel
    model = DispersionModel(numbers, positions / BOHR, lattice=box / BOHR)
    model.set_realspace_cutoff(cutoff / BOHR, FULL / BOHR, 25.0 / BOHR)
    return float(model.get_dispersion(DampingParam(s6=1.0, s8=2.7, a1=0.52, a2=5.0, s9=0.0),
                                      grad=False)["energy"]) * HARTREE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdb", nargs="?", default=os.path.join(HERE, "..", "example_systems", "ecemc.pdb"))
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[6.0, 8.0, 10.0, 12.0], help="Å")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "dispersion_tail.json"))
    args = parser.parse_args()
    try:
        import dftd4  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs dftd4: pip install dftd4==4.3.1")
    frame = md.load(args.pdb)
    positions, box = frame.xyz[0] * 10.0, frame.unitcell_vectors[0] * 10.0
    numbers = np.array([atom.element.atomic_number for atom in frame.topology.atoms])
    molecule = np.array([atom.residue.index for atom in frame.topology.atoms])
    mass = sum(atom.element.mass for atom in frame.topology.atoms)
    density = float(mass / abs(np.linalg.det(box))) * 1.66053906660
    results = dict(pdb=os.path.basename(args.pdb), atoms=len(numbers), density_g_per_ml=density,
                   method="D4 two-body, GFN2-xTB damping (dftd4)", tails=[])
    volumes, energies = {}, {}
    for scale in (0.99, 1.0, 1.01):
        moved, cell = rigidly_scaled(positions, box, molecule, scale)
        volumes[scale] = abs(np.linalg.det(cell))
        energies[scale] = {c: d4_energy(numbers, moved, cell, c) for c in args.cutoffs + [FULL]}
    for cutoff in args.cutoffs:
        tail = {s: energies[s][FULL] - energies[s][cutoff] for s in energies}
        pressure = -(tail[1.01] - tail[0.99]) / (volumes[1.01] - volumes[0.99]) * EV_PER_A3_IN_BAR
        results["tails"].append(dict(cutoff=cutoff, energy_mev_per_atom=float(1000 * tail[1.0] / len(numbers)),
                                     pressure_bar=float(pressure)))
        print(f"pairs beyond {cutoff:g} Å: {1000 * tail[1.0] / len(numbers):.2f} meV/atom, {pressure:.0f} bar")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
