"""Train a CGAA model on reference energies and forces and export a model file.

``cgaa-openmm train CONFIG.yaml [--resume]``; on several processes
``torchrun --nproc_per_node N -m training.train CONFIG.yaml`` (PyTorch DDP,
gloo on CPU, NCCL on GPUs). Units: Å, eV, eV/Å. Options: ``training.config``.

The loss is ``energy_weight * <(dE / N_atoms)^2> + forces_weight * <dF^2>``
averaged over the configurations and force components of a batch, plus, with
``grain_force_weight``, that weight times the mean squared error of every grain's net force
(the sum of its atoms' forces), plus, with
``stress_weight``, ``stress_weight * <dsigma^2>`` (eV/Å^3, the 9 components of every
periodic configuration that has a stress label, averaged over the batch's configurations). AdamW with
reduce-on-plateau and early stopping; an exponential moving average (EMA) of
the weights is what gets validated, checkpointed as best, and exported. A
checkpoint is written after every epoch (atomically); ``--resume`` continues
from it with the same batch order, so an interrupted run loses at most one
epoch. ``run_dir`` gets ``metrics.csv``, ``learning_curve.png`` and
``parity.png``.
"""
import argparse
import csv
import json
import math
import os
import random
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from cgaa_openmm.grains import hill_formula
from cgaa_openmm.model import DEFAULT_HYPERPARAMETERS, CGAAModel
from cgaa_openmm.modelfile import load_model, save_model
from cgaa_openmm.potential import resolve_model_path
from training.config import ConfigError, config_hash, load_config
from training.data import (Config, DataError, attach_graphs, collate, contact_radii, fit_atomic_energies,
                           isolated_atom_energies, largest_grain_radius, predict, read_configs)
from training.evaluate import evaluate
from training.plots import learning_curve_plot, parity_plot

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def read_data(config: Dict[str, Any], path: str) -> List[Config]:
    """The configurations of ``path`` read with the config's keys, units and grains."""
    hp = dict(DEFAULT_HYPERPARAMETERS, **config["model"])
    return read_configs(path, config["energy_key"], config["forces_key"], config["grain_key"],
                        config["grains"], config["energy_unit"], config["length_unit"],
                        config["topology_file"], config["bond_scale"], grain_span=float(hp["intra_cutoff"]),
                        stress_key=config["stress_key"])


def prepare(config: Dict[str, Any]) -> Dict[str, Any]:
    """Read and split the data, fix E0 and the data-derived normalisers; build the model."""
    configs = [c for path in [config["train_file"]] + config["extra_train_files"] for c in read_data(config, path)]
    order = np.random.RandomState(config["seed"]).permutation(len(configs))
    if config["valid_file"]:
        valid = read_data(config, config["valid_file"])
        train_set = [configs[i] for i in order]
    else:
        n_valid = max(1, int(round(config["valid_fraction"] * len(configs))))
        valid = [configs[i] for i in order[:n_valid]]
        train_set = [configs[i] for i in order[n_valid:]]
    if config["max_train"]:
        train_set = train_set[:config["max_train"]]
    elements = sorted({int(z) for c in train_set + valid for z in c.numbers})

    energies = config["atomic_energies"]
    initial = None
    if config["init_model"]:
        initial, _ = load_model(resolve_model_path(config["init_model"]))
        missing = sorted(set(elements) - set(initial.elements))
        if missing:
            raise DataError(f"init_model {config['init_model']} has no atomic numbers {missing} of the data")
        elements = list(initial.elements)
        atomic_energies = initial.atomic_energies.tolist()
    elif energies == "isolated":
        e0 = isolated_atom_energies(config["train_file"], config["energy_key"], config["energy_unit"])
        missing = [z for z in elements if z not in e0]
        if missing:
            raise DataError(f"{config['train_file']}: no IsolatedAtom energy for atomic numbers {missing}; "
                            f"set atomic_energies: fit")
        atomic_energies = [e0[z] for z in elements]
    elif energies == "fit":
        atomic_energies = fit_atomic_energies(train_set, elements)
    else:
        from ase.data import atomic_numbers
        by_number = {atomic_numbers[s]: float(e) for s, e in energies.items()}
        missing = [z for z in elements if z not in by_number]
        if missing:
            raise DataError(f"option 'atomic_energies' lacks atomic numbers {missing}")
        atomic_energies = [by_number[z] for z in elements]

    if initial is not None:  # fine-tuning: the initial model's hyperparameters, new terms from 'model'
        hp = dict(initial.hyperparameters, contact_radii=None, **config["model"])
    else:
        hp = dict(config["model"])
    if hp.get("contact_radii") is None:
        fraction = float(hp.get("contact_fraction", DEFAULT_HYPERPARAMETERS["contact_fraction"]))
        hp["contact_radii"] = contact_radii(train_set + valid, elements, fraction)
    pair_cutoff = max(float(hp.get("pair_cutoff", DEFAULT_HYPERPARAMETERS["pair_cutoff"])),
                      max(max(row) for row in hp["contact_radii"]))
    attach_graphs(train_set + valid, float(hp.get("grain_cutoff", DEFAULT_HYPERPARAMETERS["grain_cutoff"])),
                  pair_cutoff)
    # The run-time guard's radius: the largest grain of every data set the model has seen.
    hp["grain_radius"] = round(max(largest_grain_radius(train_set + valid), hp.get("grain_radius") or 0.0), 4)
    n_atoms = sum(len(c.numbers) for c in train_set)
    n_grains = sum(c.n_grains for c in train_set)
    hp.setdefault("avg_intra_neighbors", max(1.0, sum(len(c.graph.intra_src) for c in train_set) / n_atoms))
    hp.setdefault("avg_grain_neighbors", max(1.0, sum(len(c.graph.edge_src) for c in train_set) / n_grains))
    hp.setdefault("avg_grain_atoms", n_atoms / n_grains)
    hp.setdefault("energy_scale", float(torch.cat([c.forces for c in train_set]).pow(2).mean().sqrt()))
    return dict(train=train_set, valid=valid, elements=elements, atomic_energies=atomic_energies,
                hyperparameters=hp, initial_state=None if initial is None else initial.state_dict())


def new_model(data: Dict[str, Any], dtype: torch.dtype) -> CGAAModel:
    """A model as ``data`` describes it: fresh weights, or those of ``init_model``."""
    model = CGAAModel(data["elements"], data["atomic_energies"], **data["hyperparameters"]).to(dtype)
    if data["initial_state"] is not None:
        missing, unexpected = model.load_state_dict(data["initial_state"], strict=False)
        if unexpected or any(not key.startswith("pair.") for key in missing):
            raise DataError(f"init_model does not fit these hyperparameters (missing {missing}, "
                            f"unexpected {unexpected})")
    return model


def batch_loss(model, configs: Sequence[Config], elements, dtype, config, n_configs: int, n_force_terms: int,
               n_grain_terms: int = 0):
    """The loss of ``configs`` normalised by the *global* batch (``n_configs`` configurations,
    ``n_force_terms`` force components, ``n_grain_terms`` grain net-force components: needed
    with ``grain_force_weight``), so that the losses of the shards of a batch add up to the loss
    of the whole batch."""
    batch = collate(configs, elements, dtype)
    with_stress = config["stress_weight"] > 0 and bool(batch["has_stress"].any())
    energy, forces, *stress = predict(model, batch, create_graph=True, stress=with_stress)
    energy_term = ((energy - batch["energy"]) / batch["n_atoms"]).pow(2).sum() / n_configs
    forces_term = (forces - batch["forces"]).pow(2).sum() / n_force_terms
    loss = config["energy_weight"] * energy_term + config["forces_weight"] * forces_term
    if config.get("grain_force_weight", 0.0) > 0:
        error = torch.zeros(batch["n_grains"], 3, dtype=forces.dtype).index_add(0, batch["grain"],
                                                                                forces - batch["forces"])
        loss = loss + config["grain_force_weight"] * error.pow(2).sum() / n_grain_terms
    if with_stress:
        squared = (stress[0] - batch["stress"]).pow(2).mean((1, 2))
        loss = loss + config["stress_weight"] * squared[batch["has_stress"]].sum() / n_configs
    return loss


def shard(batch: Sequence[Config], rank: int, world: int) -> List[Config]:
    """This process's share of a global batch."""
    return list(batch[rank::world])


def stage_weights(config: Dict[str, Any], stage_two: bool) -> Dict[str, Any]:
    """``config`` with the loss weights of stage one, or of stage two (``stage_two_*_weight``)."""
    if not stage_two:
        return config
    return dict(config, energy_weight=config["stage_two_energy_weight"],
                forces_weight=config["stage_two_forces_weight"])


def train_step(trained, model, optimizer, batch: Sequence[Config], rank: int, world: int, elements, dtype,
               config) -> float:
    """One optimiser step on a global batch, of which this process takes its shard; the loss.

    ``trained`` is ``model`` itself or its DistributedDataParallel wrapper, which averages
    gradients over processes: the loss is scaled by ``world`` so that they add up instead.
    """
    n_force_terms = 3 * sum(len(c.numbers) for c in batch)
    n_grain_terms = 3 * sum(c.n_grains for c in batch)
    loss = world * batch_loss(trained, shard(batch, rank, world), elements, dtype, config, len(batch), n_force_terms,
                              n_grain_terms)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
    optimizer.step()
    return loss.item() / world


def write_metrics(path: str, log: List[Dict[str, float]]) -> None:
    """The whole metrics log as CSV (rewritten each epoch, so it always matches the checkpoint)."""
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    os.replace(path + ".tmp", path)


def setup_distributed():
    """(distributed, rank, world size): joins the process group when started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True, dist.get_rank(), dist.get_world_size()


def train(config: Dict[str, Any], resume: bool = False) -> Dict[str, Any]:
    """Run the training described by ``config``; return the exported model's metadata."""
    distributed, rank, world = setup_distributed()
    main_process = rank == 0
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    dtype = DTYPES[config["dtype"]]
    torch.manual_seed(config["seed"])
    random.seed(config["seed"])
    np.random.seed(config["seed"])
    data = prepare(config)
    train_set, valid, elements = data["train"], data["valid"], data["elements"]
    if len(train_set) < world:
        raise DataError(f"{len(train_set)} training configurations cannot be shared by {world} processes")
    model, ema = new_model(data, dtype), new_model(data, dtype)
    ema.load_state_dict(model.state_dict())
    trained = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"],
                                  amsgrad=config["amsgrad"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config["lr_factor"],
                                                           patience=config["lr_patience"])
    run_dir = config["run_dir"]
    os.makedirs(run_dir, exist_ok=True)
    ckpt = os.path.join(run_dir, "checkpoint.pt")
    best_path = os.path.join(run_dir, "best.pt")
    start_epoch, best, best_epoch, log = 0, math.inf, 0, []
    if resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config_sha256"] != config_hash(config):
            raise ConfigError(f"--resume: {ckpt} was written with a different config; "
                             f"start afresh without --resume or restore that config")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, best_epoch, log = state["epoch"], state["best"], state["best_epoch"], state["log"]
        if main_process:
            print(f"resumed from {ckpt} after epoch {start_epoch}", flush=True)

    bs = config["batch_size"]
    stage_two = config["stage_two_epoch"]
    for epoch in range(start_epoch, config["epochs"]):
        if stage_two is not None and epoch + 1 == stage_two:
            best, best_epoch = math.inf, epoch       # the exported model comes from stage two
            for group in optimizer.param_groups:
                group["lr"] = config["stage_two_lr"]
            if main_process:
                print(f"stage two from epoch {epoch + 1}: lr {config['stage_two_lr']}, energy weight "
                      f"{config['stage_two_energy_weight']}, forces weight {config['stage_two_forces_weight']}",
                      flush=True)
        in_stage_two = stage_two is not None and epoch + 1 >= stage_two
        weights = stage_weights(config, in_stage_two)
        if in_stage_two:
            if epoch - best_epoch >= config["early_stopping"]:
                break
        elif optimizer.param_groups[0]["lr"] < config["min_lr"] or epoch - best_epoch >= config["early_stopping"]:
            if stage_two is None or stage_two > config["epochs"]:
                break
            continue                                 # stage one is over: wait for stage two
        model.train()
        perm = np.random.RandomState(config["seed"] + epoch).permutation(len(train_set))
        starts = [s for s in range(0, len(perm), bs) if len(perm[s:s + bs]) >= world]
        t0, total = time.time(), 0.0
        bar = tqdm(starts, desc=f"epoch {epoch + 1}/{config['epochs']}", leave=False,
                   disable=None if main_process else True)
        for start in bar:
            batch = [train_set[i] for i in perm[start:start + bs]]
            total += train_step(trained, model, optimizer, batch, rank, world, elements, dtype, weights)
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(config["ema_decay"]).add_(pm, alpha=1 - config["ema_decay"])
        if distributed:
            summed = torch.tensor([total], dtype=torch.float64)
            dist.all_reduce(summed)
            total = float(summed)
        metrics = evaluate(ema, valid, elements, dtype)
        score = metrics["energy_rmse_mev_per_atom"] * 1e-3 * weights["energy_weight"] ** 0.5 \
            + metrics["forces_rmse"] * weights["forces_weight"] ** 0.5
        if not in_stage_two:
            scheduler.step(score)
        if score < best:
            best, best_epoch = score, epoch + 1
            if main_process:
                torch.save(ema.state_dict(), best_path + ".tmp")
                os.replace(best_path + ".tmp", best_path)
        log.append(dict(epoch=epoch + 1, loss=total / max(1, len(starts)), lr=optimizer.param_groups[0]["lr"],
                        seconds=round(time.time() - t0, 2), **{f"valid_{k}": v for k, v in metrics.items()}))
        if main_process:
            torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch + 1, best=best, best_epoch=best_epoch,
                            log=log, config_sha256=config_hash(config)), ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            write_metrics(os.path.join(run_dir, "metrics.csv"), log)
            print(json.dumps(log[-1]), flush=True)

    if distributed:
        dist.barrier()
    metadata = None
    if main_process:
        metadata = export(config, data, ema, best_path, log, dtype)
    if distributed:
        dist.destroy_process_group()
    return metadata


def export(config, data, ema, best_path, log, dtype) -> Dict[str, Any]:
    """Write the best EMA weights as a model file with metadata, and the plots."""
    ema.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    ema.eval()
    train_set, valid, elements = data["train"], data["valid"], data["elements"]
    run_dir = config["run_dir"]
    grain_kind = {"atom": "atom", "topology": "residue", "bonds": "molecule"}.get(config["grains"],
                                                                                  config["grain_kind"])
    metadata = dict(
        grains=grain_kind,
        grain_formulas=sorted({hill_formula(c.numbers[c.grain == g]) for c in train_set + valid
                               for g in range(c.n_grains)}),
        training=dict(config_sha256=config_hash(config), train_file=os.path.basename(config["train_file"]),
                      extra_train_files=[os.path.basename(p) for p in config["extra_train_files"]],
                      init_model=config["init_model"] and os.path.basename(config["init_model"]),
                      epochs=len(log), n_train=len(train_set), n_valid=len(valid), dtype=config["dtype"]),
        validation_errors=evaluate(ema, valid, elements, dtype),
    )
    learning_curve_plot(log, os.path.join(run_dir, "learning_curve.png"))
    if config["test_file"]:
        test = read_data(config, config["test_file"])
        attach_graphs(test, ema.grain_cutoff, ema.atom_pair_cutoff)
        errors, arrays = evaluate(ema, test, elements, dtype, return_arrays=True)
        metadata["test_errors"] = dict(errors, file=os.path.basename(config["test_file"]), n_configs=len(test))
        parity_plot(arrays, errors, os.path.join(run_dir, "parity.png"),
                    title=f"{os.path.basename(config['output'])} on {os.path.basename(config['test_file'])}")
    os.makedirs(os.path.dirname(os.path.abspath(config["output"])), exist_ok=True)
    save_model(config["output"], ema, metadata)
    print(json.dumps({k: v for k, v in metadata.items() if k != "grain_formulas"}, indent=1), flush=True)
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML training config")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    args = parser.parse_args(argv)
    train(load_config(args.config), resume=args.resume)


if __name__ == "__main__":
    main()
