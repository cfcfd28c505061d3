"""Gas-phase conformers of ACE-ALA-NME: GFN2-xTB against peptide models, minimum by minimum.

    python benchmarks/peptides/conformers.py MODEL [MODEL ...] [--output conformers.json]

Each start (phi, psi in degrees: C7eq, C5, alpha-R, C7ax, alpha-L) is made by minimising the
amber14 peptide with its backbone dihedrals restrained there (``training.datagen.peptides``). From every
start, ASE's BFGS relaxes the peptide to ``--fmax`` eV/Å once with GFN2-xTB (tblite) and once
with each model (its own grains, through an OpenMM Context). Two numbers per model:

* ``at_xtb_minima``: the model's energy at xTB's minima, relative to xTB's lowest one, against
  xTB's relative energies. ``max_error_eV`` is the largest disagreement: the conformer balance.
* ``own_minima``: where the model's own relaxation ends (phi, psi) and its relative energy there,
  with xTB's energy at that geometry (a false minimum has a high xTB energy);
  ``lowest_own_minimum_xtb_eV`` is xTB's energy at the model's lowest minimum, relative to xTB's
  lowest: 0 when the model's global minimum is xTB's.

With ``--data LABELLED.xyz`` (e.g. the umbrella-window test set ``ace-ala-nme-grid-test.xyz``)
each model also gets ``data_error_sd_eV``: the standard deviation over those configurations of
(model - xTB) energy per molecule, i.e. the error of relative energies, whatever the offset.

Energies in eV. Prints a markdown table and writes every number to ``--output`` (JSON).

``--relax-frames FRAMES.xyz --grid N`` instead relaxes the first model from an N x N grid of
(phi, psi) starts and writes every ``--every``-th geometry of each path (and its end) with the
``residue`` grain column, for ``cgaa-openmm label``: the model's own minima and the paths to them,
where a false minimum shows up, as data for an active-learning round.
"""
import argparse
import json

import numpy as np
import openmm
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS
from openmm import app, unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.potential import KJ_PER_MOL_PER_EV
from cgaa_openmm.data import PEPTIDES
from training.datagen.peptides import add_dihedral_restraints, backbone_dihedrals, build_system

PDB = PEPTIDES["ace-ala-nme"]
STARTS = {"C7eq": (-80.0, 75.0), "C5": (-155.0, 160.0), "alphaR": (-70.0, -40.0), "C7ax": (70.0, -60.0),
          "alphaL": (60.0, 45.0)}


class ModelCalculator(Calculator):
    """ASE calculator for a CGAA model file on one peptide topology (CPU, one thread), with the
    grains the model was trained with (residue, or atom for the all-atom baseline)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model: str, topology: app.Topology):
        super().__init__()
        potential = CGAAPotential.load(model)
        grains = "atom" if potential.metadata.get("grains") == "atom" else "residue"
        system = potential.createSystem(topology, grains=grains)
        self.context = openmm.Context(system, openmm.VerletIntegrator(0.0005),
                                      openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.context.setPositions(self.atoms.positions * unit.angstrom)
        state = self.context.getState(getEnergy=True, getForces=True)
        self.results = dict(
            energy=state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / KJ_PER_MOL_PER_EV,
            forces=state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.angstrom)
            / KJ_PER_MOL_PER_EV)


def start_geometry(phi: float, psi: float) -> np.ndarray:
    """Å positions of the amber14 peptide minimised with phi/psi restrained at (phi, psi) degrees."""
    topology, positions, system, _ = build_system(PDB, "implicit")
    add_dihedral_restraints(system, topology, phi, psi, 2000.0)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)


def dihedrals(positions: np.ndarray, topology) -> tuple:
    """(phi, psi) degrees of the peptide at ``positions`` (Å)."""
    atoms = Atoms(positions=positions)
    return tuple(round(float(atoms.get_dihedral(*idx, mic=False) + 180.0) % 360.0 - 180.0, 1)
                 for _, idx in backbone_dihedrals(topology))


def relax(atoms: Atoms, calculator, fmax: float, steps: int, every: int = 0) -> tuple:
    """(positions Å, energy eV, converged, path) after BFGS from ``atoms`` with ``calculator``;
    ``path`` holds every ``every``-th geometry (none if 0)."""
    moving = atoms.copy()
    moving.calc = calculator
    optimizer = BFGS(moving, logfile=None)
    path = []
    if every > 0:
        optimizer.attach(lambda: path.append(moving.positions.copy()), interval=every)
    converged = optimizer.run(fmax=fmax, steps=steps)
    return moving.positions.copy(), float(moving.get_potential_energy()), bool(converged), path


def relax_frames(model: str, output: str, grid: int, every: int, fmax: float, steps: int) -> int:
    """Write the model's relaxation paths from an n x n (phi, psi) grid of starts (see the module doc)."""
    from ase.io import write
    from training.datagen.peptides import grid_windows, residue_grains
    pdb = app.PDBFile(PDB)
    numbers = [atom.element.atomic_number for atom in pdb.topology.atoms()]
    grains = residue_grains(pdb.topology)
    calculator = ModelCalculator(model, pdb.topology)
    frames = []
    for phi, psi in grid_windows(grid):
        start = Atoms(numbers=numbers, positions=start_geometry(phi, psi))
        end, _, _, path = relax(start, calculator, fmax, steps, every)
        for k, positions in enumerate(path[1:] + [end]):
            atoms = Atoms(numbers=numbers, positions=positions)
            atoms.arrays["residue"] = grains
            atoms.info.update(label_id=f"relax-phi{phi:g}-psi{psi:g}-{k:03d}", charge=0, phi0=phi, psi0=psi)
            frames.append(atoms)
    write(output, frames)
    return len(frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model files for ACE-ALA-NME (residue or atom grains)")
    parser.add_argument("--fmax", type=float, default=0.02, help="eV/Å, BFGS convergence")
    parser.add_argument("--steps", type=int, default=1000, help="BFGS steps at most")
    parser.add_argument("--output", default="conformers.json")
    parser.add_argument("--data", help="labelled configurations (energy_xtb, eV) for data_error_sd_eV")
    parser.add_argument("--relax-frames", metavar="FRAMES.xyz",
                        help="write the first model's relaxation paths from a --grid of starts instead")
    parser.add_argument("--grid", type=int, default=6, help="N: an N x N grid of (phi, psi) starts")
    parser.add_argument("--every", type=int, default=10, help="keep every this many BFGS steps of a path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.relax_frames:
        n = relax_frames(args.models[0], args.relax_frames, args.grid, args.every, args.fmax, args.steps)
        print(f"{n} configurations written to {args.relax_frames}")
        return
    from tblite.ase import TBLite
    pdb = app.PDBFile(PDB)
    numbers = [atom.element.atomic_number for atom in pdb.topology.atoms()]
    xtb = TBLite(method="GFN2-xTB", verbosity=0)

    def xtb_energy(positions):
        return float(Atoms(numbers=numbers, positions=positions, calculator=xtb).get_potential_energy())

    starts = {name: Atoms(numbers=numbers, positions=start_geometry(*angles)) for name, angles in STARTS.items()}
    reference = {}
    for name, atoms in starts.items():
        positions, energy, converged, _ = relax(atoms, xtb, args.fmax, args.steps)
        reference[name] = dict(phi_psi=dihedrals(positions, pdb.topology), energy=energy, converged=converged,
                               positions=positions)
    lowest = min(r["energy"] for r in reference.values())
    results = dict(fmax=args.fmax, starts=STARTS, xtb={n: dict(phi_psi=r["phi_psi"], relative=r["energy"] - lowest,
                                                              converged=r["converged"]) for n, r in reference.items()},
                   models={})
    for model in args.models:
        calculator = ModelCalculator(model, pdb.topology)
        at_xtb = {n: calculator.get_potential_energy(Atoms(numbers=numbers, positions=r["positions"]))
                  for n, r in reference.items()}
        base = at_xtb[min(reference, key=lambda n: reference[n]["energy"])]
        at_xtb = {n: e - base for n, e in at_xtb.items()}
        own = {}
        for name, atoms in starts.items():
            positions, energy, converged, _ = relax(atoms, calculator, args.fmax, args.steps)
            own[name] = dict(phi_psi=dihedrals(positions, pdb.topology), energy=energy, converged=converged,
                             xtb_relative=xtb_energy(positions) - lowest)
        own_lowest = min(o["energy"] for o in own.values())
        for o in own.values():
            o["relative"] = o.pop("energy") - own_lowest
        errors = [at_xtb[n] - results["xtb"][n]["relative"] for n in reference]
        results["models"][model] = dict(at_xtb_minima=at_xtb, max_error_eV=float(np.max(np.abs(errors))),
                                        own_minima=own, lowest_own_minimum_xtb_eV=min(
                                            own.values(), key=lambda o: o["relative"])["xtb_relative"])
        if args.data:
            from ase.io import read
            labelled = read(args.data, index=":")
            data_errors = [calculator.get_potential_energy(Atoms(numbers=a.numbers, positions=a.positions))
                           - a.info["energy_xtb"] for a in labelled]
            results["models"][model].update(data=args.data, data_error_sd_eV=float(np.std(data_errors)))
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)

    print("| start | xTB minimum (phi, psi) | xTB relative (eV) | " + " | ".join(
        f"{m}: at xTB minimum / own minimum (phi, psi), relative, xTB there"
        for m in args.models) + " |")
    print("| --- " * (3 + len(args.models)) + "|")
    for name in STARTS:
        r = results["xtb"][name]
        cells = [f"{results['models'][m]['at_xtb_minima'][name]:+.3f} / {results['models'][m]['own_minima'][name]['phi_psi']}, "
                 f"{results['models'][m]['own_minima'][name]['relative']:+.3f}, "
                 f"{results['models'][m]['own_minima'][name]['xtb_relative']:+.3f}" for m in args.models]
        print(f"| {name} | {r['phi_psi']} | {r['relative']:+.3f} | " + " | ".join(cells) + " |")
    for m in args.models:
        print(f"{m}: largest error of relative energies at the xTB minima {results['models'][m]['max_error_eV']:.3f} eV; "
              f"xTB energy at the model's lowest minimum {results['models'][m]['lowest_own_minimum_xtb_eV']:+.3f} eV"
              + (f"; energy error sd on {args.data} {results['models'][m]['data_error_sd_eV']:.3f} eV"
                 if args.data else ""))


if __name__ == "__main__":
    main()
