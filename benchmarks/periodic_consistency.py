"""OpenMM against the training path on the periodic liquid frames: energy and force differences.

For every frame of ``solvent_liquid.xyz`` and ``liquid_rattled_frame.xyz`` (160 atoms, a 12.85 Å
box: 2.14x the 6 Å grain cutoff), the shipped model's ``createSystem`` force on OpenMM's Reference
platform is compared with the energy and forces of the training/``evaluate`` path
(``training.evaluate.predict_frame``), both in float64 so that only the graphs can
differ. Writes ``benchmarks/results/periodic_consistency.json``::

    python benchmarks/periodic_consistency.py [--model carbonates-xtb] [--output PATH]
"""
import argparse
import json
import os

import numpy as np
import openmm
import torch
from ase.io import read
from openmm import unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.grains import topology_from_atoms
from cgaa_openmm.potential import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
from training.data import bonded_molecules
from training.evaluate import predict_frame

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "carbonates")
FRAMES = ("solvent_liquid.xyz", "liquid_rattled_frame.xyz")


def openmm_path(potential, atoms):
    """Energy (eV) and forces (eV/Å) of the potential's System on the Reference platform."""
    system = potential.createSystem(topology_from_atoms(atoms))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
    context.setPositions(atoms.positions * 0.1)
    state = context.getState(getEnergy=True, getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / KJ_PER_MOL_PER_EV,
            forces / (KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="carbonates-xtb", help="model file or shipped model name")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                         "periodic_consistency.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    potential = CGAAPotential.load(args.model)
    potential.model.double()
    rows = []
    for name in FRAMES:
        for k, atoms in enumerate(read(os.path.join(DATA, name), ":")):
            atoms.arrays["molID"] = bonded_molecules(atoms)
            e_train, f_train = predict_frame(potential.model, atoms)
            e_openmm, f_openmm = openmm_path(potential, atoms)
            rows.append(dict(frame=f"{name}:{k}", atoms=len(atoms), box_A=float(atoms.cell.lengths().min()),
                             energy_training_eV=e_train, energy_openmm_eV=e_openmm,
                             energy_difference_eV=e_openmm - e_train,
                             max_force_difference_eV_per_A=float(np.abs(f_openmm - f_train).max())))
            print(json.dumps(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(dict(model=args.model, platform="Reference", dtype="float64", rows=rows), file, indent=1)


if __name__ == "__main__":
    main()
