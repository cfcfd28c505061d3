"""Errors of a model on labelled data, and ``cgaa-openmm evaluate MODEL DATA``.

Writes the metrics as JSON and a force/energy parity plot as PNG. Units: eV,
meV/atom, eV/Å.
"""
import argparse
import json
import os
from typing import Sequence

import numpy as np
import torch

from training.data import Config, DataError, attach_graphs, collate, predict, read_configs
from training.metrics import error_metrics

KBAR_PER_EV_PER_A3 = 1602.1766  # 1 eV/Å^3 = 160.21766 GPa


def evaluate(model, configs: Sequence[Config], elements, dtype, batch_size: int = 20,
             return_arrays: bool = False):
    """Energy and force errors of ``model`` on ``configs`` (graphs attached), and stress errors
    of those with a stress label (kbar: the RMSE of its components, and the mean and spread of
    the pressure error, pressure = -trace/3); with ``return_arrays`` also the predicted and
    reference values for parity plots."""
    e_pred, e_ref, f_pred, f_ref, n, s_error = [], [], [], [], [], []
    for start in range(0, len(configs), batch_size):
        batch = collate(configs[start:start + batch_size], elements, dtype)
        with_stress = bool(batch["has_stress"].any())
        energy, forces, *stress = predict(model, batch, stress=with_stress)
        e_pred.append(energy.detach())
        e_ref.append(batch["energy"])
        n.append(batch["n_atoms"])
        f_pred.append(forces.detach())
        f_ref.append(batch["forces"])
        if with_stress:
            s_error.append((stress[0].detach() - batch["stress"])[batch["has_stress"]])
    e_pred, e_ref, n, f_pred, f_ref = (torch.cat(x) for x in (e_pred, e_ref, n, f_pred, f_ref))
    errors = error_metrics(e_pred, e_ref, n, f_pred, f_ref)
    if s_error:
        s_error = torch.cat(s_error) * KBAR_PER_EV_PER_A3
        pressure = -s_error.diagonal(dim1=1, dim2=2).sum(1) / 3
        errors.update(stress_rmse_kbar=float(s_error.pow(2).mean().sqrt()), n_stress=len(s_error),
                      pressure_error_mean_kbar=float(pressure.mean()),
                      pressure_error_sd_kbar=float(pressure.std()) if len(pressure) > 1 else 0.0)
    if not return_arrays:
        return errors
    arrays = dict(energy_pred=(e_pred / n).numpy(), energy_ref=(e_ref / n).numpy(),
                  forces_pred=f_pred.numpy().ravel(), forces_ref=f_ref.numpy().ravel())
    return errors, arrays


def predict_frame(model, atoms, grain_key: str = "molID"):
    """Energy (eV) and forces (eV/Å, numpy) of one unlabelled ``ase.Atoms`` whose per-atom
    ``grain_key`` column gives the grains, computed as training and :func:`evaluate` compute them
    (graph, collation and autograd of :mod:`training.data`), in the model's dtype."""
    _, grain = np.unique(atoms.arrays[grain_key], return_inverse=True)
    config = Config(positions=torch.tensor(atoms.positions), numbers=torch.tensor(atoms.numbers),
                    grain=torch.tensor(grain), n_grains=int(grain.max()) + 1, energy=0.0,
                    forces=torch.zeros(len(atoms), 3, dtype=torch.float64),
                    cell=torch.tensor(np.asarray(atoms.cell)), periodic=bool(atoms.pbc.all()))
    attach_graphs([config], model.grain_cutoff, model.atom_pair_cutoff)
    energy, forces = predict(model, collate([config], model.elements, model.atomic_energies.dtype))
    return float(energy.detach()), forces.detach().double().numpy()


def evaluate_file(model_path: str, data_path: str, grains: str = None, grain_key: str = "molID",
                  energy_key: str = None, forces_key: str = None, energy_unit: str = "eV",
                  length_unit: str = "angstrom", topology_file: str = None, plot: str = None,
                  batch_size: int = 20, return_arrays: bool = False):
    """Metrics of a model file on an extended XYZ file; grains default to the model's kind
    (``atom`` for an all-atom model, else the ``grain_key`` column). With ``return_arrays``,
    also the predicted and reference energies (eV) and flattened forces (eV/Å) of every
    configuration, in file order: ``(errors, arrays)``."""
    from cgaa_openmm.modelfile import load_model
    from training.plots import parity_plot
    model, metadata = load_model(model_path)
    grains = grains or ("atom" if metadata.get("grains") == "atom" else "column")
    configs = read_configs(data_path, energy_key, forces_key, grain_key, grains, energy_unit, length_unit,
                           topology_file, grain_span=float(model.hyperparameters["intra_cutoff"]))
    unknown = sorted({int(z) for c in configs for z in c.numbers} - set(model.elements))
    if unknown:
        raise DataError(f"{data_path}: elements with atomic numbers {unknown} are not in the model "
                        f"(it knows {model.elements})")
    attach_graphs(configs, model.grain_cutoff, model.atom_pair_cutoff)
    errors, arrays = evaluate(model, configs, model.elements, model.atomic_energies.dtype, batch_size,
                              return_arrays=True)
    errors = dict(errors, n_configs=len(configs), n_atoms=int(sum(len(c.numbers) for c in configs)),
                  model=os.path.basename(model_path), data=os.path.basename(data_path))
    if plot:
        parity_plot(arrays, errors, plot, title=f"{errors['model']} on {errors['data']}")
    return (errors, arrays) if return_arrays else errors


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cgaa-openmm evaluate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file or shipped model name")
    parser.add_argument("data", help="extended XYZ with reference energies and forces")
    parser.add_argument("--grains", choices=["column", "topology", "bonds", "atom"],
                        help="default: atom for an all-atom model, else column")
    parser.add_argument("--grain-key", default="molID")
    parser.add_argument("--topology", help="PDB whose residues are the grains (--grains topology)")
    parser.add_argument("--energy-key", help="energy label (default: the first of energy, REF_energy, energy_xtb, "
                                             "the calculator's energy)")
    parser.add_argument("--forces-key", help="forces label (default: the first of forces, REF_forces, forces_xtb, "
                                             "the calculator's forces)")
    parser.add_argument("--energy-unit", default="eV", choices=["eV", "kcal/mol", "kJ/mol", "Hartree"])
    parser.add_argument("--length-unit", default="angstrom", choices=["angstrom", "nm", "bohr"])
    parser.add_argument("--plot", help="parity plot to write (PNG)")
    parser.add_argument("--output", help="metrics to write (JSON)")


def run(args) -> None:
    from cgaa_openmm.potential import resolve_model_path
    errors = evaluate_file(resolve_model_path(args.model), args.data, args.grains, args.grain_key,
                           args.energy_key, args.forces_key, args.energy_unit, args.length_unit,
                           args.topology, args.plot)
    text = json.dumps(errors, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
