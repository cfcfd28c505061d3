"""Virial pressure of labelled periodic boxes: the reference's, against density, and each model's error.

From the stress of every box (``stress_xtb``, (1/V) dE/dstrain in eV/Å^3, ``cgaa-openmm label``)
and its forces:

* atomic virial pressure P = -trace(stress) / 3;
* molecular virial pressure: the atomic one minus sum_j (r_j - R_J) . F_j / 3V over the atoms j of
  every grain J (r_j unwrapped, R_J the grain's centre), i.e. only the forces between grains, which
  is what a Monte Carlo barostat that moves grains rigidly responds to; with the grains' kinetic
  part N_grains k T / V for the reference's equation of state.

Writes ``OUTPUT/pressure.json`` and ``OUTPUT/pressure.png``: the reference's molecular pressure
against density (and its mean per density bin), and for every ``--model`` the mean and spread of
its atomic and molecular pressure errors (model - reference, kbar). Units: kbar, g/mL.

Usage::

    python benchmarks/pressure.py training/datasets/ecemc-boxes*.xyz.xz --model carbonates-xtb-fast \
        --output benchmarks/results/pressure
"""
import argparse
import os
import sys
from typing import Dict, List

import numpy as np
import torch
from ase.units import kB

from common import AVOGADRO, save_results
from training.evaluate import KBAR_PER_EV_PER_A3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BINS = (0.6, 0.9, 1.0, 1.1, 1.2, 1.4)


def pressures(batch: Dict[str, torch.Tensor], forces: torch.Tensor, stress: torch.Tensor) -> tuple:
    """Atomic and molecular virial pressures (kbar) of every configuration of a collated batch."""
    from cgaa_openmm.graph import grain_centres
    r = batch["positions"] + batch["graph"].unwrap_shift
    relative = r - grain_centres(r, batch["grain"], batch["n_grains"])[batch["grain"]]
    internal = torch.zeros(len(batch["energy"]), dtype=r.dtype).index_add(
        0, batch["atom_config"], (relative * forces).sum(1))
    atomic = -stress.diagonal(dim1=1, dim2=2).sum(1) / 3
    molecular = atomic - internal / (3 * batch["volume"])
    return (atomic * KBAR_PER_EV_PER_A3).numpy(), (molecular * KBAR_PER_EV_PER_A3).numpy()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="extended XYZ files of periodic boxes with stress_xtb")
    parser.add_argument("--model", action="append", default=[], help="model file or shipped name (repeatable)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, for the grains' kinetic pressure")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "pressure"))
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import atomic_masses

    from cgaa_openmm.modelfile import load_model
    from cgaa_openmm.potential import resolve_model_path
    from training.data import attach_graphs, collate, predict, read_configs

    configs, density = [], []
    for path in args.data:
        boxes = [c for c in read_configs(path) if c.stress is not None]
        if not boxes:
            sys.exit(f"{path}: no periodic configurations with a stress_xtb label")
        configs += boxes
        density += [atomic_masses[c.numbers.numpy()].sum() / abs(float(torch.linalg.det(c.cell))) * 1e24 / AVOGADRO
                    for c in boxes]
    density = np.array(density)
    elements = sorted({int(z) for c in configs for z in c.numbers})
    attach_graphs(configs, 6.0)
    reference_atomic: List[float] = []
    reference_molecular: List[float] = []
    kinetic = []
    for start in range(0, len(configs), 20):
        chunk = configs[start:start + 20]
        batch = collate(chunk, elements, torch.float64)
        atomic, molecular = pressures(batch, batch["forces"], batch["stress"])
        reference_atomic += list(atomic)
        reference_molecular += list(molecular)
        kinetic += [c.n_grains * kB * args.temperature / float(v) * KBAR_PER_EV_PER_A3
                    for c, v in zip(chunk, batch["volume"])]
    equation_of_state = np.array(reference_molecular) + np.array(kinetic)
    bins = []
    for low, high in zip(BINS[:-1], BINS[1:]):
        inside = (density >= low) & (density < high)
        if inside.any():
            values = equation_of_state[inside]
            bins.append(dict(density=[low, high], n=int(inside.sum()), molecular_kbar=float(values.mean()),
                             standard_error_kbar=float(values.std() / np.sqrt(len(values)))))
            print(f"{low}-{high} g/mL ({inside.sum():3d} boxes): reference molecular pressure "
                  f"{values.mean():+6.2f} ± {values.std() / np.sqrt(len(values)):.2f} kbar")
    results = dict(data=[os.path.basename(p) for p in args.data], temperature_k=args.temperature,
                   reference_bins=bins, models={})
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(density, equation_of_state, s=6, color="k", label="reference (molecular + kinetic)")
    for name in args.model:
        model, _ = load_model(resolve_model_path(name))
        model = model.double()
        attach_graphs(configs, model.grain_cutoff, model.pair_cutoff)
        predicted: Dict[str, List[float]] = {"atomic": [], "molecular": []}
        for start in range(0, len(configs), 20):
            batch = collate(configs[start:start + 20], model.elements, torch.float64)
            _, forces, stress = predict(model, batch, stress=True)
            atomic, molecular = pressures(batch, forces.detach(), stress.detach())
            predicted["atomic"] += list(atomic)
            predicted["molecular"] += list(molecular)
        errors = {"atomic": np.array(predicted["atomic"]) - np.array(reference_atomic),
                  "molecular": np.array(predicted["molecular"]) - np.array(reference_molecular)}
        summary = {kind: dict(mean_kbar=float(np.mean(v)), sd_kbar=float(np.std(v))) for kind, v in errors.items()}
        results["models"][name] = summary
        print(f"{name}: pressure error atomic {summary['atomic']['mean_kbar']:+.2f} ± "
              f"{summary['atomic']['sd_kbar']:.2f}, molecular {summary['molecular']['mean_kbar']:+.2f} ± "
              f"{summary['molecular']['sd_kbar']:.2f} kbar")
        ax.scatter(density, equation_of_state + errors["molecular"], s=6, label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("density (g/mL)")
    ax.set_ylabel("molecular pressure (kbar)")
    ax.legend(fontsize=7)
    save_results(args.output, "pressure", results, fig)


if __name__ == "__main__":
    main()
