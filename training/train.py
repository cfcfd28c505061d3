"""Train a CGAA model on reference energies and forces and export a model file.

Usage: ``python -m training.train CONFIG.yaml [--resume]``. Units: Å, eV, eV/Å.
The loss is ``energy_weight * MSE(E / N_atoms) + forces_weight * MSE(F)``;
Adam with reduce-on-plateau and an exponential moving average (EMA) of the
weights, which is what gets validated and exported. A checkpoint is written
after every epoch; ``--resume`` continues from it.
"""
import argparse
import hashlib
import json
import math
import os
import random
import time
from typing import Any, Dict

import numpy as np
import torch
import yaml
from tqdm import tqdm

from cgaa_openmm.grains import hill_formula
from cgaa_openmm.model import DEFAULT_HYPERPARAMETERS, CGAAModel
from cgaa_openmm.modelfile import save_model
from training.data import (attach_graphs, collate, fit_atomic_energies, isolated_atom_energies,
                           predict, read_configs)
from training.metrics import error_metrics

DEFAULTS: Dict[str, Any] = dict(
    train_file=None,        # extended XYZ with energies and forces (required)
    test_file=None,         # optional extended XYZ evaluated with the final model
    energy_key="energy_xtb",
    forces_key="forces_xtb",
    grain_key="molID",      # per-atom column with the grain of every atom
    grains="column",        # "column" (from grain_key) or "atom" (all-atom baseline)
    grain_kind="molecule",  # what the grains are, recorded in the model file
    atomic_energies="isolated",  # "isolated" (IsolatedAtom entries) or "fit" (least squares)
    model={},               # CGAAModel hyperparameters (see cgaa_openmm.model)
    valid_fraction=0.1,
    seed=1,
    batch_size=5,           # configurations per batch
    epochs=100,
    lr=0.005,
    energy_weight=1.0,      # on (eV/atom)^2
    forces_weight=10.0,     # on (eV/Å)^2
    ema_decay=0.99,
    patience=10,            # epochs without improvement before the learning rate halves
    dtype="float32",
    output="model.pt",
    checkpoint=None,        # default: <output>.ckpt
)


PATH_KEYS = ("train_file", "test_file", "output", "checkpoint")


def load_config(path: str) -> Dict[str, Any]:
    """Read a YAML config, fill defaults, and reject unknown keys by name."""
    with open(path) as f:
        user = yaml.safe_load(f) or {}
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known keys: {sorted(DEFAULTS)}")
    config = dict(DEFAULTS, **user)
    if not config["train_file"]:
        raise ValueError(f"{path}: 'train_file' is required")
    base = os.path.dirname(os.path.abspath(path))
    for key in PATH_KEYS:
        if config[key] and not os.path.isabs(config[key]):
            config[key] = os.path.normpath(os.path.join(base, config[key]))
    config["checkpoint"] = config["checkpoint"] or config["output"] + ".ckpt"
    return config


def config_hash(config: Dict[str, Any]) -> str:
    """SHA-256 of the config with file paths reduced to their names (the same on every machine)."""
    portable = {k: os.path.basename(v) if k in PATH_KEYS and v else v for k, v in config.items()}
    return hashlib.sha256(json.dumps(portable, sort_keys=True).encode()).hexdigest()


def evaluate(model, configs, elements, dtype, batch_size=20) -> Dict[str, float]:
    """Energy and force errors of ``model`` on ``configs``."""
    e_pred, e_ref, f_pred, f_ref, n = [], [], [], [], []
    for start in range(0, len(configs), batch_size):
        batch = collate(configs[start:start + batch_size], elements, dtype)
        energy, forces = predict(model, batch)
        e_pred.append(energy.detach()); e_ref.append(batch["energy"]); n.append(batch["n_atoms"])
        f_pred.append(forces.detach()); f_ref.append(batch["forces"])
    return error_metrics(torch.cat(e_pred), torch.cat(e_ref), torch.cat(n), torch.cat(f_pred), torch.cat(f_ref))


def train(config: Dict[str, Any], resume: bool = False) -> Dict[str, Any]:
    """Run the training described by ``config``; return the exported model's metadata."""
    dtype = {"float32": torch.float32, "float64": torch.float64}[config["dtype"]]
    torch.manual_seed(config["seed"]); random.seed(config["seed"]); np.random.seed(config["seed"])
    grains = config["grains"]
    configs = read_configs(config["train_file"], config["energy_key"], config["forces_key"],
                           config["grain_key"], grains)
    elements = sorted({int(z) for c in configs for z in c.numbers})
    if config["atomic_energies"] == "isolated":
        e0 = isolated_atom_energies(config["train_file"], config["energy_key"])
        missing = [z for z in elements if z not in e0]
        if missing:
            raise ValueError(f"{config['train_file']}: no IsolatedAtom energy for elements {missing}")
        atomic_energies = [e0[z] for z in elements]
    else:
        atomic_energies = fit_atomic_energies(configs, elements)

    order = np.random.RandomState(config["seed"]).permutation(len(configs))
    n_valid = max(1, int(round(config["valid_fraction"] * len(configs))))
    valid = [configs[i] for i in order[:n_valid]]
    train_set = [configs[i] for i in order[n_valid:]]

    hp = dict(config["model"])
    attach_graphs(configs, float(hp.get("grain_cutoff", DEFAULT_HYPERPARAMETERS["grain_cutoff"])))
    # Data-derived normalisation: neighbour counts and the force scale.
    n_atoms = sum(len(c.numbers) for c in train_set)
    n_grains = sum(c.n_grains for c in train_set)
    hp.setdefault("avg_intra_neighbors", max(1.0, sum(len(c.graph["intra_src"]) for c in train_set) / n_atoms))
    hp.setdefault("avg_grain_neighbors", max(1.0, sum(len(c.graph["edge_src"]) for c in train_set) / n_grains))
    hp.setdefault("avg_grain_atoms", n_atoms / n_grains)
    hp.setdefault("energy_scale", float(torch.cat([c.forces for c in train_set]).pow(2).mean().sqrt()))
    model = CGAAModel(elements, atomic_energies, **hp).to(dtype)
    ema = CGAAModel(elements, atomic_energies, **hp).to(dtype)
    ema.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=config["patience"])
    start_epoch, best, log = 0, math.inf, []

    ckpt = config["checkpoint"]
    if resume and os.path.exists(ckpt):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"]); ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"]); scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, log = state["epoch"], state["best"], state["log"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt} at epoch {start_epoch}")

    rng = np.random.RandomState(config["seed"] + start_epoch)
    bs = config["batch_size"]
    for epoch in range(start_epoch, config["epochs"]):
        model.train()
        perm = rng.permutation(len(train_set))
        t0 = time.time()
        total = 0.0
        bar = tqdm(range(0, len(perm), bs), desc=f"epoch {epoch + 1}/{config['epochs']}",
                   leave=False, disable=None)
        for start in bar:
            batch = collate([train_set[i] for i in perm[start:start + bs]], elements, dtype)
            energy, forces = predict(model, batch, create_graph=True)
            loss = (config["energy_weight"] * ((energy - batch["energy"]) / batch["n_atoms"]).pow(2).mean()
                    + config["forces_weight"] * (forces - batch["forces"]).pow(2).mean())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            optimizer.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(config["ema_decay"]).add_(pm, alpha=1 - config["ema_decay"])
            total += loss.item()
        metrics = evaluate(ema, valid, elements, dtype)
        score = metrics["energy_rmse_mev_per_atom"] * 1e-3 * config["energy_weight"] ** 0.5 \
            + metrics["forces_rmse"] * config["forces_weight"] ** 0.5
        scheduler.step(score)
        row = dict(epoch=epoch + 1, loss=total / max(1, len(bar)), lr=optimizer.param_groups[0]["lr"],
                   seconds=time.time() - t0, **{f"valid_{k}": v for k, v in metrics.items()})
        log.append(row)
        print(json.dumps(row), flush=True)
        if score < best:
            best = score
            torch.save(ema.state_dict(), ckpt + ".best")
        torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), epoch=epoch + 1, best=best, log=log,
                        torch_rng=torch.get_rng_state()), ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)

    ema.load_state_dict(torch.load(ckpt + ".best", map_location="cpu", weights_only=True))
    ema.eval()
    metadata = dict(
        grains=config["grain_kind"] if grains == "column" else "atom",
        grain_formulas=sorted({hill_formula(c.numbers[c.grain == g]) for c in configs for g in range(c.n_grains)}),
        training=dict(config_sha256=config_hash(config),
                      train_file=os.path.basename(config["train_file"]), epochs=len(log),
                      n_train=len(train_set), n_valid=len(valid)),
        validation_errors=evaluate(ema, valid, elements, dtype),
    )
    if config["test_file"]:
        test = read_configs(config["test_file"], config["energy_key"], config["forces_key"],
                            config["grain_key"], grains)
        attach_graphs(test, ema.grain_cutoff)
        metadata["test_errors"] = dict(evaluate(ema, test, elements, dtype),
                                       file=os.path.basename(config["test_file"]), n_configs=len(test))
    save_model(config["output"], ema, metadata)
    print(json.dumps({k: v for k, v in metadata.items() if k != "grain_formulas"}, indent=1))
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML training config")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    train(load_config(args.config), resume=args.resume)


if __name__ == "__main__":
    main()
