"""Training configuration: every option, its default and its meaning, and validation.

A config is a YAML mapping; relative paths in it are relative to the YAML file.
``load_config`` fills the defaults below and rejects unknown keys and bad values
with an error that names the key. ``docs/training.md`` lists the same options.
"""
import hashlib
import json
import os
from typing import Any, Dict, Tuple

import yaml

from cgaa_openmm.model import DEFAULT_HYPERPARAMETERS

# key: (default, description). ``None`` as default means "not set".
OPTIONS: Dict[str, Tuple[Any, str]] = {
    # Data
    "train_file": (None, "extended XYZ with reference energies and forces (required)"),
    "extra_train_files": ([], "more extended XYZ files joined to train_file before the split (same keys), "
                              "e.g. labelled clusters of the model's own MD frames; any file name may end in an ASE "
                              "index, frames.xyz.xz@:50"),
    "valid_file": (None, "extended XYZ used for validation; default: a split of train_file"),
    "test_file": (None, "extended XYZ evaluated once with the final model"),
    "energy_key": (None, "per-configuration key of the total energy, in info or the calculator results ASE "
                         "reads (default: the first of energy, REF_energy, energy_xtb, the calculator's energy)"),
    "forces_key": (None, "per-atom column of the forces (default: the first of forces, REF_forces, forces_xtb, "
                         "the calculator's forces)"),
    "stress_key": (None, "per-configuration key of the stress of periodic configurations (9 numbers or 6 in "
                         "Voigt order, energy_unit/length_unit^3, ASE's sign; a key naming a virial W is taken "
                         "as -W/V; default: the first of stress, REF_stress, stress_xtb, the calculator's stress, "
                         "virial, REF_virial); used with stress_weight"),
    "energy_unit": ("eV", "unit of energies in the files: eV, kcal/mol, kJ/mol or Hartree"),
    "length_unit": ("angstrom", "unit of positions in the files: angstrom, nm or bohr; forces are "
                                "in energy_unit/length_unit"),
    "grains": ("column", "how atoms form grains: column (per-atom grain_key), topology (residues of "
                         "topology_file), bonds (bond-connected molecules) or atom (all-atom baseline)"),
    "grain_key": ("molID", "per-atom integer column naming each atom's grain (grains: column)"),
    "topology_file": (None, "PDB whose residues are the grains, atoms in file order (grains: topology)"),
    "bond_scale": (1.5, "bonds join atoms closer than bond_scale x the sum of covalent radii (grains: bonds); "
                         "1.5 keeps strongly distorted training geometries whole"),
    "grain_kind": ("molecule", "what a grain is, recorded in the model file (molecule, residue, fragment)"),
    "atomic_energies": ("isolated", "per-element reference energies E0: isolated (config_type=IsolatedAtom "
                                    "entries of train_file), fit (least squares) or a mapping symbol: eV"),
    "valid_fraction": (0.1, "fraction of train_file held out for validation when valid_file is not set"),
    "max_train": (None, "use only the first max_train training configurations (learning curves)"),
    # Model
    "model": ({}, "CGAAModel hyperparameters; see cgaa_openmm.model.DEFAULT_HYPERPARAMETERS"),
    "init_model": (None, "fine-tune: start from this model file (or shipped model name); its "
                         "hyperparameters, elements and E0 are kept, contact radii are refit to the data, "
                         "'atomic_energies' must be left unset and 'model' may only add a pair term "
                         "(pair_cutoff), change the contact wall or set the long-range tail (long_range_tail)"),
    "dtype": ("float32", "float32 or float64 for weights and arithmetic"),
    # Optimisation
    "seed": (1, "seed of the split, the weights and the batch order"),
    "batch_size": (5, "configurations per optimiser step (over all processes)"),
    "epochs": (100, "maximum number of passes over the training set"),
    "lr": (0.005, "initial learning rate of AdamW"),
    "weight_decay": (0.0, "AdamW decoupled weight decay"),
    "energy_weight": (1.0, "loss weight on the squared energy error per atom, (eV/atom)^2"),
    "forces_weight": (10.0, "loss weight on the squared force-component error, (eV/angstrom)^2"),
    "grain_force_weight": (0.0, "loss weight on the squared error of each grain's net force (the sum of its "
                                "atoms' forces, components, (eV/angstrom)^2): the force between grains, which "
                                "the per-atom force term weighs only by its small share of the atomic forces"),
    "stress_weight": (0.0, "loss weight on the squared stress-component error of periodic configurations "
                           "with a stress label, (eV/angstrom^3)^2; the stress sets the pressure that a "
                           "barostat sees"),
    "ema_decay": (0.99, "decay of the exponential moving average of the weights (0: no EMA)"),
    "amsgrad": (False, "AdamW with the AMSGrad variant (as MACE trains)"),
    "stage_two_epoch": (None, "first epoch (counted from 1) of a second stage, as MACE's SWA stage: from it "
                              "the loss uses stage_two_energy_weight and stage_two_forces_weight, the "
                              "learning rate is stage_two_lr, and the best model is chosen among stage-two "
                              "epochs only; None: one stage"),
    "stage_two_energy_weight": (1000.0, "energy_weight of the second stage"),
    "stage_two_forces_weight": (10.0, "forces_weight of the second stage"),
    "stage_two_lr": (0.001, "learning rate of the second stage (held constant)"),
    "lr_patience": (10, "epochs without validation improvement before the learning rate is multiplied "
                        "by lr_factor"),
    "lr_factor": (0.5, "learning-rate reduction factor on a plateau"),
    "min_lr": (1e-5, "learning rate below which training stops"),
    "early_stopping": (30, "stop after this many epochs without validation improvement"),
    "grad_clip": (100.0, "maximum gradient norm"),
    "threads": (None, "torch CPU threads per process (default: torch's choice)"),
    # Output
    "output": ("model.pt", "the exported model file"),
    "run_dir": (None, "checkpoint, metrics.csv and plots; default: <output without .pt>_run/"),
}

#: Hyperparameters a fine-tuning config may set: terms added to, or refit on, the initial model.
FINE_TUNING_HYPERPARAMETERS = ("pair_cutoff", "pair_kind", "contact_fraction", "contact_strength", "long_range_tail")

PATH_KEYS = ("train_file", "valid_file", "test_file", "topology_file", "output", "run_dir")
CHOICES = {
    "energy_unit": ("eV", "kcal/mol", "kJ/mol", "Hartree"),
    "length_unit": ("angstrom", "nm", "bohr"),
    "grains": ("column", "topology", "bonds", "atom"),
    "dtype": ("float32", "float64"),
}
POSITIVE = ("batch_size", "epochs", "lr", "lr_patience", "early_stopping", "grad_clip", "bond_scale")


class ConfigError(ValueError):
    """A training config with an unknown key or a bad value (the message names the key)."""


def defaults() -> Dict[str, Any]:
    return {key: (type(value)(value) if isinstance(value, (dict, list)) else value)
            for key, (value, _) in OPTIONS.items()}


def load_config(path: str) -> Dict[str, Any]:
    """Read a YAML config, fill defaults, check every value, make paths absolute."""
    try:
        with open(path) as f:
            user = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: a config is a mapping of option: value, not {type(user).__name__}")
    config = validate(user, where=path)
    base = os.path.dirname(os.path.abspath(path))
    for key in PATH_KEYS:
        if config[key] and not os.path.isabs(config[key]):
            config[key] = os.path.normpath(os.path.join(base, config[key]))
    config["extra_train_files"] = [os.path.normpath(os.path.join(base, p)) for p in config["extra_train_files"]]
    if config["init_model"] and os.path.exists(os.path.join(base, config["init_model"])):
        config["init_model"] = os.path.normpath(os.path.join(base, config["init_model"]))
    if not config["run_dir"]:
        config["run_dir"] = os.path.splitext(config["output"])[0] + "_run"
    return config


def validate(user: Dict[str, Any], where: str = "config") -> Dict[str, Any]:
    """Defaults plus ``user``; :class:`ConfigError` naming the first bad key."""
    unknown = sorted(set(user) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}; known options: {sorted(OPTIONS)}")
    config = dict(defaults(), **user)
    if not config["train_file"]:
        raise ConfigError(f"{where}: option 'train_file' is required")
    for key, choices in CHOICES.items():
        if config[key] not in choices:
            raise ConfigError(f"{where}: option {key!r} must be one of {list(choices)}, not {config[key]!r}")
    for key in POSITIVE:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: option {key!r} must be a positive number, not {value!r}")
    for key in ("energy_weight", "forces_weight", "grain_force_weight", "stress_weight", "weight_decay", "min_lr"):
        if isinstance(config[key], bool) or not isinstance(config[key], (int, float)) or config[key] < 0:
            raise ConfigError(f"{where}: option {key!r} must be a number >= 0, not {config[key]!r}")
    if not 0 <= config["ema_decay"] < 1:
        raise ConfigError(f"{where}: option 'ema_decay' must be in [0, 1), not {config['ema_decay']!r}")
    if not config["valid_file"] and not 0 < config["valid_fraction"] < 1:
        raise ConfigError(f"{where}: option 'valid_fraction' must be in (0, 1), not {config['valid_fraction']!r}")
    if config["grains"] == "topology" and not config["topology_file"]:
        raise ConfigError(f"{where}: option 'topology_file' is required when grains is 'topology'")
    energies = config["atomic_energies"]
    if not (energies in ("isolated", "fit") or isinstance(energies, dict)):
        raise ConfigError(f"{where}: option 'atomic_energies' must be 'isolated', 'fit' or a mapping "
                          f"element symbol: eV, not {energies!r}")
    if not isinstance(config["model"], dict):
        raise ConfigError(f"{where}: option 'model' must be a mapping of hyperparameters")
    bad = sorted(set(config["model"]) - set(DEFAULT_HYPERPARAMETERS))
    if bad:
        raise ConfigError(f"{where}: unknown model hyperparameter 'model.{bad[0]}'; known: "
                          f"{sorted(DEFAULT_HYPERPARAMETERS)}")
    extra = config["extra_train_files"]
    if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
        raise ConfigError(f"{where}: option 'extra_train_files' must be a list of file paths, not {extra!r}")
    if config["init_model"] is not None:
        if not isinstance(config["init_model"], str):
            raise ConfigError(f"{where}: option 'init_model' must be a model file or shipped model name")
        if "atomic_energies" in user:
            raise ConfigError(f"{where}: option 'atomic_energies' cannot be set with 'init_model' "
                              f"(the initial model fixes it)")
        fixed = sorted(set(config["model"]) - set(FINE_TUNING_HYPERPARAMETERS))
        if fixed:
            raise ConfigError(f"{where}: option 'model.{fixed[0]}' cannot be set with 'init_model' (the initial "
                              f"model fixes it; fine-tuning may set {list(FINE_TUNING_HYPERPARAMETERS)})")
    for key in ("max_train", "threads"):
        if config[key] is not None and (not isinstance(config[key], int) or config[key] <= 0):
            raise ConfigError(f"{where}: option {key!r} must be a positive integer, not {config[key]!r}")
    return config


#: Options added after models and checkpoints were made: left at their defaults they are not part of
#: a config's hash, so that adding an option does not orphan those models and checkpoints.
ADDED_LATER = ("grain_force_weight",)


def config_hash(config: Dict[str, Any]) -> str:
    """SHA-256 of the config with file paths reduced to their names (the same on every machine)."""
    portable = {k: os.path.basename(v) if k in PATH_KEYS + ("init_model",) and v else v for k, v in config.items()
                if not (k in ADDED_LATER and v == OPTIONS[k][0])}
    portable["extra_train_files"] = [os.path.basename(p) for p in config["extra_train_files"]]
    return hashlib.sha256(json.dumps(portable, sort_keys=True).encode()).hexdigest()
