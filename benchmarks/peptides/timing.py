"""Milliseconds per energy-and-forces evaluation of peptide models in an OpenMM Context.

    python benchmarks/peptides/timing.py MODEL:GRAINS [MODEL:GRAINS ...] [--pdb PDB] [--repeats 20]

e.g. ``training/runs/peptide-ala-residue/model.pt:residue training/runs/peptide-ala-atom/model.pt:atom``.
Every model runs in the same process on the CPU platform with one thread (OpenMM and torch), on the
same peptide (default: ACE-ALA-NME); each evaluation gets new positions (the PDB's, jiggled by
0.01 Å) so nothing is cached. Prints the median and the quartiles of ``repeats`` evaluations after
three warm-up ones, as JSON.
"""
import argparse
import json
import time

import numpy as np
import openmm
import torch
from openmm import app, unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.data import PEPTIDES



def time_model(model: str, grains: str, pdb: app.PDBFile, repeats: int) -> dict:
    potential = CGAAPotential.load(model)
    system = potential.createSystem(pdb.topology, grains=grains, precision="single")
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), platform, {"Threads": "1"})
    reference = np.array(pdb.positions.value_in_unit(unit.nanometer))
    rng = np.random.default_rng(0)
    seconds = []
    for k in range(repeats + 3):
        context.setPositions(reference + rng.normal(scale=0.001, size=reference.shape))
        start = time.perf_counter()
        context.getState(getEnergy=True, getForces=True)
        if k >= 3:
            seconds.append(time.perf_counter() - start)
    ms = 1000 * np.array(seconds)
    return dict(model=model, grains=grains, atoms=pdb.topology.getNumAtoms(),
                n_grains=len(set(potential.createModule(pdb.topology, grains=grains).grain.tolist())),
                ms_median=round(float(np.median(ms)), 2), ms_q25=round(float(np.percentile(ms, 25)), 2),
                ms_q75=round(float(np.percentile(ms, 75)), 2), repeats=repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="MODEL:GRAINS, GRAINS residue or atom")
    parser.add_argument("--pdb", default=PEPTIDES["ace-ala-nme"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pdb = app.PDBFile(args.pdb)
    for spec in args.models:
        model, grains = spec.rsplit(":", 1)
        print(json.dumps(time_model(model, grains, pdb, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
