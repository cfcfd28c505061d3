"""Energy error vs density on labelled periodic liquid boxes, per model.

A model whose energy error drifts with density pushes an NPT run towards the densities where it
overbinds, even when its forces are good. For every box of a labelled extended XYZ file (e.g.
``cgaa-openmm boxes`` + ``cgaa-openmm label``, atoms in the order of ``TOPOLOGY``) this writes
the model's energy error (meV/atom, model - xTB) against the box's density, with a straight-line
fit per model: its slope (meV/atom per g/mL) is the drift.

With ``--molecules`` every molecule of every box is also labelled alone (cached in
``OUTPUT/molecules-xtb.xyz``) and the error is split into its intramolecular part (the sum over
the isolated molecules) and the intermolecular rest.

Writes ``OUTPUT/density_errors.json`` and ``OUTPUT/density_errors.png``.

Usage::

    python benchmarks/density_errors.py RUN/topology.pdb boxes-xtb.xyz --model carbonates-xtb \
        --output benchmarks/results/density_errors
"""
import argparse
import os
import sys

import numpy as np

from common import AVOGADRO, model_energies, save_results


def isolated_molecules(boxes):
    """Every molecule (``molID``) of every box alone, made whole, with ``label_id`` BOX-mK."""
    from ase import Atoms

    from training.datagen.clusters import minimum_image
    molecules = []
    for index, box in enumerate(boxes):
        for label in np.unique(box.arrays["molID"]):
            rows = np.flatnonzero(box.arrays["molID"] == label)
            xyz = box.positions[rows]
            atoms = Atoms(numbers=box.numbers[rows],
                          positions=xyz[0] + minimum_image(xyz - xyz[0], np.asarray(box.cell)))
            atoms.arrays["molID"] = np.zeros(len(rows), dtype=int)
            atoms.info.update(label_id=f"{box.info.get('label_id', index)}-m{label}", box=index)
            molecules.append(atoms)
    return molecules


def molecule_energies(name: str, path: str) -> np.ndarray:
    """Energy (eV) of every configuration of the extended XYZ ``path`` with model ``name``."""
    import torch

    from cgaa_openmm.modelfile import load_model
    from cgaa_openmm.potential import resolve_model_path
    from training.data import attach_graphs, collate, predict, read_configs
    model, _ = load_model(resolve_model_path(name))
    configs = read_configs(path)
    attach_graphs(configs, model.grain_cutoff, model.pair_cutoff)
    energies = []
    for start in range(0, len(configs), 50):
        energy, _ = predict(model, collate(configs[start:start + 50], model.elements, torch.float32))
        energies += energy.detach().tolist()
    return np.array(energies)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topology", help="PDB with bonds and box, atoms in the boxes' order")
    parser.add_argument("boxes", help="labelled periodic boxes (extended XYZ with energy_xtb)")
    parser.add_argument("--model", action="append", required=True, help="model file or name (repeatable)")
    parser.add_argument("--energy-key", default="energy_xtb")
    parser.add_argument("--molecules", action="store_true",
                        help="also label each molecule alone and split the error into intra- and "
                             "intermolecular parts")
    parser.add_argument("--workers", type=int, default=1, help="tblite processes (--molecules)")
    parser.add_argument("--output", required=True, help="output directory")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.io import read

    boxes = read(args.boxes, index=":")
    n_atoms = len(boxes[0])
    density = np.array([b.get_masses().sum() / AVOGADRO / b.get_volume() * 1e24 for b in boxes])
    reference = np.array([b.info[args.energy_key] for b in boxes])
    results = {"boxes": args.boxes, "n_boxes": len(boxes), "atoms_per_box": n_atoms,
               "density_g_per_ml": density.tolist(), "models": {}}
    os.makedirs(args.output, exist_ok=True)
    if args.molecules:
        from training.datagen.label import label
        molecules = isolated_molecules(boxes)
        cache = os.path.join(args.output, "molecules-xtb.xyz")
        label(molecules, cache, workers=args.workers)
        labelled = {a.info["label_id"]: a.info[args.energy_key] for a in read(cache, index=":")}
        if len(labelled) != len(molecules):
            sys.exit(f"xTB failed for some isolated molecules (see {cache}.json)")
        owner = np.array([m.info["box"] for m in molecules])
        reference_molecules = np.bincount(owner, weights=[labelled[m.info["label_id"]] for m in molecules])
        results["xtb_cohesive_meV_per_molecule"] = (
            (reference - reference_molecules) / len(molecules) * len(boxes) * 1000).tolist()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, colour in zip(args.model, ["C0", "C1", "C2", "C3", "C4"]):
        error = (model_energies(name, args.topology, boxes) - reference) / n_atoms * 1000
        slope, intercept = np.polyfit(density, error, 1)
        results["models"][name] = {
            "error_meV_per_atom": error.tolist(), "mean": float(error.mean()), "std": float(error.std()),
            "slope_meV_per_atom_per_g_per_ml": float(slope)}
        print(f"{name}: error {error.mean():+.1f} ± {error.std():.1f} meV/atom, "
              f"slope {slope:+.1f} meV/atom per g/mL")
        if args.molecules:
            model_molecules = np.bincount(owner, weights=molecule_energies(name, cache))
            intra = (model_molecules - reference_molecules) / n_atoms * 1000
            inter = error - intra
            results["models"][name].update(
                intramolecular_meV_per_atom=intra.tolist(), intermolecular_meV_per_atom=inter.tolist())
            print(f"{name}: intramolecular {intra.mean():+.1f} ± {intra.std():.1f}, intermolecular "
                  f"{inter.mean():+.1f} ± {inter.std():.1f} meV/atom (slope {np.polyfit(density, inter, 1)[0]:+.0f})")
        ax.scatter(density, error, s=8, color=colour, label=os.path.basename(name))
        grid = np.linspace(density.min(), density.max(), 2)
        ax.plot(grid, slope * grid + intercept, color=colour, lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("density (g/mL)")
    ax.set_ylabel("E(model) - E(xTB) (meV/atom)")
    ax.legend(fontsize=8)
    save_results(args.output, "density_errors", results, fig)


if __name__ == "__main__":
    main()
