"""Energy error vs density on labelled periodic liquid boxes, per model.

A model whose energy error drifts with density pushes an NPT run towards the densities where it
overbinds, even when its forces are good. For every box of a labelled extended XYZ file (e.g.
``cgaa-openmm boxes`` + ``cgaa-openmm label``, atoms in the order of ``TOPOLOGY``) this writes
the model's energy error (meV/atom, model - xTB) against the box's density, with a straight-line
fit per model: its slope (meV/atom per g/mL) is the drift.

Writes ``OUTPUT/density_errors.json`` and ``OUTPUT/density_errors.png``.

Usage::

    python benchmarks/density_errors.py RUN/topology.pdb boxes-xtb.xyz --model carbonates-xtb \
        --output benchmarks/results/density_errors
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eos import AVOGADRO, model_energies  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topology", help="PDB with bonds and box, atoms in the boxes' order")
    parser.add_argument("boxes", help="labelled periodic boxes (extended XYZ with energy_xtb)")
    parser.add_argument("--model", action="append", required=True, help="model file or name (repeatable)")
    parser.add_argument("--energy-key", default="energy_xtb")
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
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, colour in zip(args.model, ["C0", "C1", "C2", "C3", "C4"]):
        error = (model_energies(name, args.topology, boxes) - reference) / n_atoms * 1000
        slope, intercept = np.polyfit(density, error, 1)
        results["models"][name] = {
            "error_meV_per_atom": error.tolist(), "mean": float(error.mean()), "std": float(error.std()),
            "slope_meV_per_atom_per_g_per_ml": float(slope)}
        print(f"{name}: error {error.mean():+.1f} ± {error.std():.1f} meV/atom, "
              f"slope {slope:+.1f} meV/atom per g/mL")
        ax.scatter(density, error, s=8, color=colour, label=os.path.basename(name))
        grid = np.linspace(density.min(), density.max(), 2)
        ax.plot(grid, slope * grid + intercept, color=colour, lw=1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("density (g/mL)")
    ax.set_ylabel("E(model) - E(xTB) (meV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(args.output, exist_ok=True)
    fig.savefig(os.path.join(args.output, "density_errors.png"), dpi=150)
    with open(os.path.join(args.output, "density_errors.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {args.output}/density_errors.json and density_errors.png")


if __name__ == "__main__":
    main()
