"""Pareto front against MACE: test force error against cost per atom, every model in one run.

Every trained row learns from the 200 configurations of ``solvent_xtb_train_200.xyz`` alone and
is tested on all 1000 of ``solvent_xtb_test.xyz``. Rows (``ROWS``):

* CGAA variants, each a training config of ``training/configs/`` trained here
  (``benchmarks/runs/pareto/<row>``; a finished one is reused, an interrupted one resumed);
* the atom-grain baseline: the default model's config with every atom its own grain
  (5 Å atom cutoff), trained the same way;
* MACE (mace-torch ``MACE_VERSION`` in its own venv, ``benchmarks/.venv-mace``, built on first
  use) at the tutorial size and the medium size of the brief, trained with ``mace_run_train``
  as in its tutorials (float64, EMA, AMSGrad, an SWA stage with a high energy weight), on the CPU
  or, with ``--mace-device cuda``, a GPU (the same recipe: minutes instead of hours for the medium
  size; the model file is then re-saved CPU-loadable): the very models whose errors are in the
  table are the ones timed;
* the shipped models as shipped (whatever data they saw after the 200 configurations).

Timing: the EC/EMC box (``example_systems/ecemc.pdb``) tiled to 800, 3,200 and 9,600 atoms, one
thread, float32, every (row, size) in a fresh subprocess killed past ``--timeout`` or
``--max-rss-gb``. ``total``: median of ``getState(energy, forces)`` in an OpenMM CPU-platform
Context (``Threads=1``) holding the model as an ``openmmtorch.TorchForce``. ``graph``: median
of the same model's neighbour search and graph construction alone (TorchScript, the code the
TorchForce runs); ``model`` = total - graph. MACE runs in OpenMM the way openmm-ml deploys it
(the TorchScript-compiled model, energy only, forces by the TorchForce's backward pass) in
float32, with the same O(N) cell list as CGAA (``cgaa_openmm/neighbors.py``) for its edges
instead of matscipy in Python; its energy there is checked against mace's own calculator.
The shipped models, and rows marked ``atom_timing``, also time their hyperparameters with atom
grains (untrained weights: speed does not depend on them; 5 Å atom cutoff) for the "atom grains /
CGAA" ratio. Medians of 5 evaluations after 2 warm-up ones, of 3 where one takes over 5 s, and a
single evaluation after one warm-up where that takes over 30 s.

Usage: ``python benchmarks/pareto.py [--rows NAME ...] [--sizes 800 3200 9600] [--config NAME=YAML]
[--skip-mace] [--mace-device cuda] [--teachers-only] [--quick]``. Writes
``benchmarks/results/pareto.json``, ``pareto.md`` and ``pareto.png`` (``--output-dir``).
``--teachers-only`` trains and tests the chosen MACE rows and labels the chosen rows' teacher data,
nothing else (the part worth a GPU). ``--quick`` (for the test): one evaluation, no warm-up.

``pareto.json``: ``rows``, one flat record per model and size (``model``, ``atoms``, ``threads``,
``us_per_atom`` (total, graph included), ``model_us_per_atom``, ``graph_us_per_atom``,
``force_rmse_eV_per_A``, ``train_configs`` (of the 200 reference configurations), ``extra_data``
(teacher-labelled copies or liquid data a row saw besides them), ``grains`` (CGAA: molecule or
atom; null for MACE), ``trained`` (false for the untrained atom-grain timings));
``models``, everything measured per model (errors, timings, atom-grain timings, description);
``targets``; and the machine and settings.
"""
import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from common import (DATA, KJ_PER_EV, MACE_SIZES, MACE_VERSION, ROOT, launch, mace_errors, machine, median_time,
                    source_module, tiled_box, train_cgaa, train_mace)

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(ROOT, "training", "configs")
TRAIN = os.path.join(DATA, "solvent_xtb_train_200.xyz")
TEST = os.path.join(DATA, "solvent_xtb_test.xyz")
#: Rattled copies of each configuration for a student: their standard deviations (Å), repeated for more.
COPY_SIGMAS = (0.02, 0.04, 0.07, 0.1)


def pair_distilled(recipe: str, teacher: str, copies: int = 4, epochs: int = None, **model) -> dict:
    """A row of the ``recipe`` ("fast" or "wide") architecture with the grain net-force loss and a
    signed 5 Å atom pair term between grains, distilled from MACE ``teacher`` with ``copies``
    rattled copies per configuration (4 or 8: by default 50 or 30 epochs, about as many steps);
    ``epochs``: another length (stage two over its last quarter); ``model``: further hyperparameters."""
    epochs = epochs or {4: 50, 8: 30}[copies]
    stage_two = round(0.76 * epochs)
    return dict(config=f"carbonates-{recipe}-recipe.yaml", distill=teacher, sigmas=COPY_SIGMAS * (copies // 4),
                overrides=dict(epochs=epochs, stage_two_epoch=stage_two, grain_force_weight=10.0,
                               model=dict(pair_cutoff=5.0, pair_kind="signed", **model)))


#: row -> how to get it: a CGAA training config (``config``, ``overrides``), a MACE size, or a
#: shipped model name.
ROWS = {
    "cgaa-fast-recipe": dict(config="carbonates-fast-recipe.yaml"),
    "cgaa-wide-recipe": dict(config="carbonates-wide-recipe.yaml", atom_timing=True),
    "cgaa-wide-grain-recipe": dict(config="carbonates-wide-grain-recipe.yaml"),
    "cgaa-fast-grain-force": dict(config="carbonates-fast-recipe.yaml", overrides=dict(grain_force_weight=10.0)),
    "cgaa-fast-pair": dict(config="carbonates-fast-recipe.yaml",
                           overrides=dict(grain_force_weight=10.0, model=dict(pair_cutoff=5.0, pair_kind="signed"))),
    "cgaa-fast-distilled": dict(config="carbonates-fast-recipe.yaml", distill="tutorial",
                                overrides=dict(epochs=50, stage_two_epoch=38)),
    "cgaa-fast-distilled-4": dict(config="carbonates-fast-recipe.yaml", distill="tutorial",
                                  sigmas=COPY_SIGMAS, overrides=dict(epochs=25, stage_two_epoch=19)),
    "cgaa-fast-pair-distilled": dict(config="carbonates-fast-recipe.yaml", distill="tutorial",
                                     overrides=dict(epochs=50, stage_two_epoch=38, grain_force_weight=10.0,
                                                    model=dict(pair_cutoff=5.0, pair_kind="signed"))),
    "cgaa-fast-pair-distilled-4": pair_distilled("fast", "tutorial"),
    "cgaa-fast-pair-distilled-4-dc16": pair_distilled("fast", "tutorial", density_channels=16),
    "cgaa-wide-distilled": dict(config="carbonates-wide-recipe.yaml", distill="tutorial",
                                overrides=dict(epochs=50, stage_two_epoch=38)),
    "cgaa-wide-pair-distilled-4": pair_distilled("wide", "tutorial"),
    "cgaa-fast-pair-distilled-medium-4-dc16": pair_distilled("fast", "medium", density_channels=16),
    "cgaa-wide-pair-distilled-medium-4": pair_distilled("wide", "medium"),
    "cgaa-wide-pair-distilled-medium-8": pair_distilled("wide", "medium", copies=8),
    "cgaa-fast-pair-distilled-medium-4-dc16-long": pair_distilled("fast", "medium", epochs=100, density_channels=16),
    "cgaa-wide-pair-distilled-medium-4-long": pair_distilled("wide", "medium", epochs=100),
    "atom-grains": dict(config="carbonates-xtb.yaml",
                        overrides=dict(grains="atom", grain_kind="atom", model=dict(grain_cutoff=5.0))),
    "mace-tutorial": dict(mace="tutorial"),
    "mace-medium": dict(mace="medium"),
    "carbonates-xtb": dict(shipped="carbonates-xtb"),
    "carbonates-xtb-fast": dict(shipped="carbonates-xtb-fast"),
}
#: Row names of an older pareto.json, read under their current names.
RENAMED = {"shipped-carbonates-xtb": "carbonates-xtb", "shipped-carbonates-xtb-fast": "carbonates-xtb-fast"}
#: mace_run_train options by size: the tutorial's, and the medium model of the brief.
ATOM_CUTOFF = 5.0
#: Knowledge distillation: rattled copies (Gaussian, these standard deviations in Å) of every
#: configuration the teacher trained on, labelled by the teacher (a row's ``sigmas``).
RATTLE_SIGMAS = (0.03, 0.08)


# ---------------------------------------------------------------- workers (one subprocess each)

def cgaa_worker(path: str, atoms: int, atom_grains: bool, quick: bool) -> dict:
    """Timings of a CGAA model file on the tiled box (molecule grains, or its hyperparameters
    with atom grains and untrained weights)."""
    import openmm
    import torch
    from openmm import unit

    from cgaa_openmm import CGAAPotential
    torch.set_num_threads(1)
    topology, xyz = tiled_box(atoms)
    potential = CGAAPotential.load(path)
    grains = "molecule"
    if atom_grains:
        potential = potential.atomGrainBaseline(ATOM_CUTOFF)
        grains = "atom"
    system = potential.createSystem(topology, grains=grains, precision="single")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(xyz)
    positions = torch.tensor(xyz, dtype=torch.float32)
    box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)), dtype=torch.float32)
    # Graph alone: the core's prepare (checks, unwrapping, neighbour search, graph), scripted on
    # its own (freezing inlines it into forward), on the module's topology.
    from e3nn.util.jit import script
    module = potential.createModule(topology, grains=grains, precision="single").eval()
    prepare, system_topology = script(module.core).prepare, module.topology()
    return timings(lambda: context.getState(getEnergy=True, getForces=True),
                   lambda: prepare(positions, box, system_topology),
                   quick, atoms=atoms, energy_kj_mol=context.getState(getEnergy=True).getPotentialEnergy()
                   .value_in_unit(unit.kilojoule_per_mole),
                   parameters=sum(p.numel() for p in potential.model.parameters()))


def mace_worker(path: str, atoms: int, quick: bool) -> dict:
    """Timings of a trained MACE model file on the tiled box, in OpenMM (run in the MACE venv)."""
    import torch  # first: it loads the CUDA runtime libraries that openmm-torch links to (and mace,
    import openmm  # imported before openmm-torch, leaves them unfound)
    import openmmtorch

    import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which e3nn 0.4's torch.load needs)
    from ase import Atoms
    from e3nn.util import jit
    from e3nn.util.jit import compile_mode
    from mace.calculators import MACECalculator
    from openmm import unit
    torch.set_num_threads(1)
    neighbor_pairs = source_module(os.path.join(ROOT, "cgaa_openmm", "neighbors.py"), "cgaa_neighbors").neighbor_pairs
    topology, xyz = tiled_box(atoms)
    numbers = [a.element.atomic_number for a in topology.atoms()]
    model = torch.load(path, map_location="cpu", weights_only=False).float().eval()
    table = [int(z) for z in model.atomic_numbers]
    node_attrs = torch.nn.functional.one_hot(torch.tensor([table.index(z) for z in numbers]), len(table))
    r_max = float(model.r_max)

    @compile_mode("script")
    class Graph(torch.nn.Module):
        """Positions (nm), box (nm, rows) -> positions (Å), edges and shifts (Å) within r_max."""

        def __init__(self):
            super().__init__()
            self.r_max = r_max

        def forward(self, positions: torch.Tensor, box: torch.Tensor):
            r = positions.to(torch.float32) * 10.0  # the CPU platform passes float64
            cell = box.to(torch.float32) * 10.0
            i, j, shift = neighbor_pairs(r, cell, True, self.r_max)
            return r, torch.stack([i, j]), shift, cell

    @compile_mode("script")
    class MACEEnergy(torch.nn.Module):
        """Energy (kJ/mol) of positions (nm) in a box (nm): what openmm-ml's MACE module returns."""

        def __init__(self):
            super().__init__()
            self.graph = Graph()
            self.model = model
            self.register_buffer("node_attrs", node_attrs.to(torch.float32))
            self.register_buffer("batch", torch.zeros(len(numbers), dtype=torch.long))
            self.register_buffer("ptr", torch.tensor([0, len(numbers)]))

        def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
            r, edges, shift, cell = self.graph(positions, box)
            data = {"positions": r, "node_attrs": self.node_attrs, "edge_index": edges, "shifts": shift,
                    "unit_shifts": torch.zeros_like(shift), "cell": cell, "batch": self.batch, "ptr": self.ptr}
            energy = self.model(data, compute_force=False)["energy"]
            assert energy is not None
            return energy.sum() * 96.48533212331

    # Frozen (every method call inlined; the TorchForce's clone of an unfrozen module misses the
    # submodules' methods), and passed through a file: openmm-torch's constructor does not take the
    # module object in this venv.
    scripted = os.path.join(os.path.dirname(os.path.abspath(path)), f"openmm-{atoms}.pt")
    torch.jit.freeze(jit.compile(MACEEnergy()).eval()).save(scripted)
    force = openmmtorch.TorchForce(scripted)
    force.setUsesPeriodicBoundaryConditions(True)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(xyz)
    positions = torch.tensor(xyz, dtype=torch.float32)
    box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)), dtype=torch.float32)
    graph = jit.compile(Graph())
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    extra = dict(atoms=atoms, energy_kj_mol=energy, parameters=sum(p.numel() for p in model.parameters()),
                 path="TorchScript (e3nn jit.compile) in an openmmtorch.TorchForce, float32, energy only")
    if atoms <= 800:  # the same energy from mace's own calculator (its matscipy graph)
        calc = MACECalculator(model_paths=path, device="cpu", default_dtype="float32")
        ase_atoms = Atoms(numbers=numbers, positions=10.0 * xyz, pbc=True,
                          cell=np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)))
        extra["energy_mace_calculator_kj_mol"] = KJ_PER_EV * float(calc.get_potential_energy(ase_atoms))
    return timings(lambda: context.getState(getEnergy=True, getForces=True), lambda: graph(positions, box),
                   quick, **extra)


def timings(total, graph, quick: bool, **extra) -> dict:
    """Median total and graph times (ms) and their difference, the model's."""
    repeats, warmup = (1, 0) if quick else (5, 2)
    t = median_time(total, repeats, warmup, slow_s=5.0)
    g = median_time(graph, repeats, warmup, slow_s=5.0)
    return dict(extra, total_ms=t["median_ms"], total_times_ms=t["times_ms"], graph_ms=g["median_ms"],
                model_ms=t["median_ms"] - g["median_ms"], us_per_atom=1e3 * t["median_ms"] / extra["atoms"],
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, load_average=os.getloadavg()[0])


# ---------------------------------------------------------------- driver

def file_sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def test_errors(name: str, path: str, kind: str, test_file: str, venv: str, runs: str, device: str = "cpu") -> dict:
    """Errors on ``test_file`` (cached by model file and test file); MACE evaluates on ``device``."""
    cache = os.path.join(runs, f"{name}.test.json")
    key = f"{file_sha(path)}:{os.path.basename(test_file)}"
    if os.path.exists(cache):
        cached = json.load(open(cache))
        if cached.get("key") == key and "net_molecular_force_rmse" in cached["errors"]:
            return cached["errors"]
    if kind == "mace":
        predictions = os.path.join(runs, f"{name}.test_predictions.xyz")
        subprocess.run([os.path.join(venv, "bin", "mace_eval_configs"), f"--configs={test_file}", f"--model={path}",
                        f"--output={predictions}", f"--device={device}", "--default_dtype=float64"], check=True)
        errors = dict(mace_errors(predictions), data=os.path.basename(test_file))
        forces = np.concatenate([a.arrays["MACE_forces"] for a in read_clusters(predictions)])
    else:
        from training.evaluate import evaluate_file
        errors, arrays = evaluate_file(path, test_file, return_arrays=True)
        forces = np.asarray(arrays["forces_pred"]).reshape(-1, 3)
    errors.update(force_breakdown(read_clusters(test_file), forces))
    with open(cache, "w") as f:
        json.dump(dict(key=key, errors=errors), f)
    return errors


def read_clusters(path: str) -> list:
    from ase.io import read
    return [a for a in read(path, index=":") if a.info.get("config_type") != "IsolatedAtom"]


def force_breakdown(frames: list, forces: np.ndarray) -> dict:
    """Where the force error is (eV/Å): configurations whose largest reference force component
    is below or above 10 eV/Å (strongly distorted molecules), and the net force on each molecule
    (``molID``), the intermolecular part that the grain level carries, against its reference size."""
    offsets = np.cumsum([0] + [len(a) for a in frames])
    squared = {"below": [0.0, 0, 0], "above": [0.0, 0, 0]}  # sum of squares, components, configs
    net_error, net_ref = [], []
    for atoms, start, end in zip(frames, offsets[:-1], offsets[1:]):
        ref, error = atoms.arrays["forces_xtb"], forces[start:end] - atoms.arrays["forces_xtb"]
        bin_ = squared["below" if np.abs(ref).max() < 10.0 else "above"]
        bin_[0] += float((error ** 2).sum())
        bin_[1] += error.size
        bin_[2] += 1
        for m in np.unique(atoms.arrays["molID"]):
            mine = atoms.arrays["molID"] == m
            net_error.append(error[mine].sum(0))
            net_ref.append(ref[mine].sum(0))
    return dict(forces_rmse_max_force_below_10=(squared["below"][0] / max(squared["below"][1], 1)) ** 0.5,
                forces_rmse_max_force_above_10=(squared["above"][0] / max(squared["above"][1], 1)) ** 0.5,
                n_configs_max_force_above_10=squared["above"][2],
                net_molecular_force_rmse=float(np.sqrt(np.mean(np.square(net_error)))),
                net_molecular_force_reference_rms=float(np.sqrt(np.mean(np.square(net_ref)))))


def describe(name: str, spec: dict, path: str) -> str:
    """A row's label: what it is, in a few words."""
    if "mace" in spec:
        return f"MACE {MACE_VERSION}, {spec['mace']} size ({' '.join(MACE_SIZES[spec['mace']][:3])})"
    from cgaa_openmm.modelfile import load_model
    model, _ = load_model(path)
    hp = model.hyperparameters
    what = "atom grains" if "grains" in spec.get("overrides", {}) else "CGAA"
    if "grain_force_weight" in spec.get("overrides", {}):
        what = f"CGAA, grain net-force loss weight {spec['overrides']['grain_force_weight']:g}"
        if hp.get("pair_cutoff", 0) > 0:
            what += f", {hp['pair_kind']} atom pair term between grains ({hp['pair_cutoff']:g} Å)"
    if "distill" in spec:
        sigmas = spec.get("sigmas", RATTLE_SIGMAS)
        distilled = f"distilled from MACE {spec['distill']} ({len(sigmas)} rattled copies per config, σ {sigmas} Å)"
        what = what.replace("CGAA", "CGAA " + distilled, 1) if what.startswith("CGAA,") else f"CGAA {distilled}"
    if "shipped" in spec:
        what = f"shipped {spec['shipped']}"
    return (f"{what}: {hp['channels']} ch, L {hp['lmax']}, {hp.get('embed_layers', 1)} {hp.get('embed_kind', '')} "
            f"layers, {hp.get('interactions', 1)} interactions, {hp.get('grain_products', 0)} grain products")


def row_path(name: str, spec: dict, args) -> str:
    if "mace" in spec:
        return train_mace(spec["mace"], args.mace_venv, os.path.join(args.runs, f"mace-{spec['mace']}"),
                          device=args.mace_device)
    if "shipped" in spec:
        from cgaa_openmm.potential import resolve_model_path
        return resolve_model_path(spec["shipped"])
    config = spec["config"] if os.path.isabs(spec["config"]) else os.path.join(CONFIGS, spec["config"])
    overrides = dict(spec.get("overrides", {}))
    if "distill" in spec:
        overrides.update(teacher_data(spec["distill"], spec.get("sigmas", RATTLE_SIGMAS), args))
    return train_cgaa(config, name, args.runs, overrides)


def teacher_data(size: str, sigmas, args) -> dict:
    """Training files of a student of MACE ``size``: the teacher's own training and validation
    configurations of the 200 (its split), and rattled copies of its training ones labelled by
    it (standard deviations ``sigmas``, Å, seed 0), written as ``energy_xtb``/``forces_xtb`` with
    ``label_source`` saying whose labels they are. Returns the config overrides."""
    from ase.io import read, write
    teacher = train_mace(size, args.mace_venv, os.path.join(args.runs, f"mace-{size}"), device=args.mace_device)
    work = os.path.join(args.runs, f"distill-{size}" + ("" if tuple(sigmas) == RATTLE_SIGMAS else f"-{len(sigmas)}"))
    files = {k: os.path.join(work, f"{k}.xyz") for k in ("train", "valid", "teacher")}
    if not all(os.path.exists(f) for f in files.values()):
        os.makedirs(work, exist_ok=True)
        frames = read(TRAIN, index=":")
        isolated = [a for a in frames if a.info.get("config_type") == "IsolatedAtom"]
        clusters = [a for a in frames if a.info.get("config_type") != "IsolatedAtom"]
        valid_ids = {int(line) for line in open(os.path.join(os.path.dirname(teacher),
                                                             f"mace-{size}_valid_indices_123.txt"))}
        train = [a for i, a in enumerate(clusters) if i not in valid_ids]
        write(files["valid"], [a for i, a in enumerate(clusters) if i in valid_ids])
        rng = np.random.default_rng(0)
        rattled = []
        for atoms in train:
            for sigma in sigmas:
                copy = atoms.copy()
                copy.positions += rng.normal(scale=sigma, size=copy.positions.shape)
                copy.info = dict(Comp=atoms.info.get("Comp"), rattle_sigma=sigma)
                copy.arrays = {k: v for k, v in copy.arrays.items() if k in ("numbers", "positions", "molID")}
                rattled.append(copy)
        unlabelled = os.path.join(work, "rattled.xyz")
        write(unlabelled, rattled)
        predictions = os.path.join(work, "rattled_predictions.xyz")
        subprocess.run([os.path.join(args.mace_venv, "bin", "mace_eval_configs"), f"--configs={unlabelled}",
                        f"--model={teacher}", f"--output={predictions}", f"--device={args.mace_device}",
                        "--default_dtype=float64"],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        labelled = []
        for atoms in read(predictions, index=":"):
            atoms.info["energy_xtb"] = atoms.info.pop("MACE_energy")
            atoms.arrays["forces_xtb"] = atoms.arrays.pop("MACE_forces")
            atoms.info["label_source"] = f"MACE {size} teacher ({os.path.basename(teacher)})"
            labelled.append(atoms)
        write(files["teacher"], labelled)
        write(files["train"], isolated + train)
    return dict(train_file=files["train"], valid_file=files["valid"], extra_train_files=[files["teacher"]])


def time_row(name: str, spec: dict, path: str, atoms: int, args, atom_grains: bool = False) -> dict:
    python = os.path.join(args.mace_venv, "bin", "python") if "mace" in spec else sys.executable
    command = [python, os.path.abspath(__file__), "--worker", "mace" if "mace" in spec else "cgaa",
               "--model-path", path, "--atoms", str(atoms)] + (["--atom-grains"] if atom_grains else []) \
        + (["--quick"] if args.quick else [])
    log = os.path.join(args.runs, "logs", f"{name}{'-as-atoms' if atom_grains else ''}-{atoms}.log")
    print(f"== timing {name}{' (atom grains)' if atom_grains else ''} at {atoms} atoms", flush=True)
    return launch(command, log, args.timeout, args.max_rss_gb * 1024)


def read_results(path: str) -> dict:
    """``pareto.json`` as written, or empty; one of an older layout (per-model data under ``rows``,
    shipped rows named ``shipped-...``) is read into the current one."""
    results = json.load(open(path)) if os.path.exists(path) else {}
    if isinstance(results.get("rows"), dict):
        results["models"] = results.pop("rows")
    results["models"] = {RENAMED.get(name, name): row for name, row in results.get("models", {}).items()}
    return results


def extra_data(spec: dict) -> str:
    """What a row learned from besides the 200 reference configurations ("" if nothing)."""
    if "distill" in spec:
        sigmas = spec.get("sigmas", RATTLE_SIGMAS)
        return f"{len(sigmas)} rattled copies of each of its 180 training configurations labelled by MACE {spec['distill']}"
    if "shipped" in spec:
        from cgaa_openmm.potential import CGAAPotential
        training = CGAAPotential.load(spec["shipped"]).metadata.get("training", {})
        extra = [os.path.basename(f) for f in training.get("extra_train_files") or []]
        start = f"{training['init_model']} fine-tuned with " if training.get("init_model") else ""
        return start + ", ".join(extra) if extra else start
    return ""


def records(models: dict) -> list:
    """The flat ``rows`` of pareto.json: one per model and timed size (molecule grains), and one per
    atom-grain timing (untrained weights: ``trained`` false, no error)."""
    rows = []
    for name, model in models.items():
        error = model.get("errors", {}).get("forces_rmse")
        extras = extra_data(ROWS[name]) if name in ROWS else model.get("extra_data", "")
        grains = None if name.startswith("mace") else (
            "atom" if ROWS.get(name, {}).get("overrides", {}).get("grains") == "atom" else "molecule")
        for grains, key in ((grains, "timings"), ("atom", "atom_grain_timings")):
            for atoms, t in sorted(model.get(key, {}).items(), key=lambda item: int(item[0])):
                if "total_ms" not in t:
                    continue
                n = int(atoms)
                rows.append(dict(model=name if key == "timings" else f"{name} (atom grains)", atoms=n, threads=1,
                                 us_per_atom=1e3 * t["total_ms"] / n, model_us_per_atom=1e3 * t["model_ms"] / n,
                                 graph_us_per_atom=1e3 * t["graph_ms"] / n,
                                 force_rmse_eV_per_A=error if key == "timings" else None,
                                 train_configs=200, extra_data=extras, grains=grains,
                                 trained=key == "timings"))
    return rows


def save(path: str, results: dict, names: list) -> dict:
    """Write ``results`` with its models ``names`` merged into the file's other models (re-read first:
    runs of this script for different rows may overlap) and the flat ``rows`` made from them all;
    returns the merged results."""
    merged = read_results(path)
    merged.update({k: v for k, v in results.items() if k not in ("rows", "models")})
    merged["models"].update({name: results["models"][name] for name in names if name in results["models"]})
    merged["rows"] = records(merged["models"])
    with open(path + f".{os.getpid()}.tmp", "w") as f:
        json.dump(merged, f, indent=1)
    os.replace(path + f".{os.getpid()}.tmp", path)
    return merged


def ratio(results: dict, slow: str, fast: str, atoms: int, key: str = "total_ms"):
    """Time of row ``slow`` over row ``fast`` at ``atoms`` (None if either is missing)."""
    a = results["models"].get(slow, {}).get("timings", {}).get(str(atoms), {})
    b = results["models"].get(fast, {}).get("timings", {}).get(str(atoms), {})
    return a[key] / b[key] if key in a and key in b else None


def targets(results: dict, atoms: int) -> list:
    """The issue's targets for the shipped models, measured or not."""
    rows = results["models"]

    def rmse(name):
        return rows.get(name, {}).get("errors", {}).get("forces_rmse")

    def atom_ratio(name):
        row = rows.get(name, {})
        a, b = row.get("atom_grain_timings", {}).get(str(atoms), {}), row.get("timings", {}).get(str(atoms), {})
        return a["total_ms"] / b["total_ms"] if "total_ms" in a and "total_ms" in b else None
    def stage_one(name):
        """The row whose model the shipped model ``name`` was fine-tuned from (its file's
        ``init_model``): the model trained on the 200 configurations alone."""
        from cgaa_openmm.modelfile import load_model
        from cgaa_openmm.potential import resolve_model_path
        _, metadata = load_model(resolve_model_path(name))
        row = os.path.splitext(metadata.get("training", {}).get("init_model") or "")[0]
        return row or "(none)"
    default, fast = "carbonates-xtb", "carbonates-xtb-fast"
    first = stage_one(default)
    checks = [
        (f"{default} as trained on the 200 configurations, before fine-tuning (row {first}): test force RMSE "
         "≤ 0.150 eV/Å", rmse(first), lambda v: v <= 0.150),
        (f"{default} as shipped: test force RMSE ≤ 0.150 eV/Å", rmse(default), lambda v: v <= 0.150),
        (f"{default}: ≥ 20× faster than MACE medium at {atoms} atoms",
         ratio(results, "mace-medium", default, atoms), lambda v: v >= 20),
        (f"{default}: ≥ 20× faster than atom grains of its hyperparameters at {atoms} atoms", atom_ratio(default),
         lambda v: v >= 20),
        (f"{fast}: test force RMSE ≤ MACE tutorial's ({rmse('mace-tutorial') or float('nan'):.3f})", rmse(fast),
         lambda v: rmse("mace-tutorial") is not None and v <= rmse("mace-tutorial")),
        (f"{fast}: ≥ 10× faster than MACE tutorial at {atoms} atoms", ratio(results, "mace-tutorial", fast, atoms),
         lambda v: v >= 10),
    ]
    return [dict(target=t, value=v, met=None if v is None else bool(ok(v))) for t, v, ok in checks]


def table(results: dict) -> str:
    sizes = results["sizes"]
    big = max(sizes)
    head = ["row", "what", "parameters", "force RMSE (eV/Å)", "energy RMSE (meV/atom)",
            "force RMSE, configs with largest force component < 10 / ≥ 10 eV/Å", "net molecular force RMSE (eV/Å)"]
    head += [f"µs/atom at {n}: total (model + graph)" for n in sizes]
    head += [f"MACE tutorial / row at {big}", f"MACE medium / row at {big}", f"atom grains / row at {big}"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, row in results["models"].items():
        errors = row.get("errors", {})
        cells = [name, row.get("what", ""), str(next((t.get("parameters") for t in row.get("timings", {}).values()
                                                      if "parameters" in t), "")),
                 f"{errors['forces_rmse']:.3f}" if "forces_rmse" in errors else "",
                 f"{errors['energy_rmse_mev_per_atom']:.2f}" if "energy_rmse_mev_per_atom" in errors else "",
                 f"{errors['forces_rmse_max_force_below_10']:.3f} / {errors['forces_rmse_max_force_above_10']:.3f}"
                 if "forces_rmse_max_force_below_10" in errors else "",
                 f"{errors['net_molecular_force_rmse']:.3f}" if "net_molecular_force_rmse" in errors else ""]
        for n in sizes:
            t = row.get("timings", {}).get(str(n), {})
            if "total_ms" in t:
                cells.append(f"{t['us_per_atom']:.0f} ({1e3 * t['model_ms'] / n:.0f} + {1e3 * t['graph_ms'] / n:.0f})")
            else:
                cells.append(t.get("status", ""))
        for mace in ("mace-tutorial", "mace-medium"):
            r = ratio(results, mace, name, big)
            cells.append(f"{r:.1f}×" if r else "")
        a, b = row.get("atom_grain_timings", {}).get(str(big), {}), row.get("timings", {}).get(str(big), {})
        cells.append(f"{a['total_ms'] / b['total_ms']:.1f}×" if "total_ms" in a and "total_ms" in b else
                     a.get("status", ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    for t in results.get("targets", []):
        value = "" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"| {t['target']} | {value} | {'' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    m = results["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores; one thread per evaluation, float32, OpenMM CPU platform. "
              f"Test set: {results['test_file']} ({results.get('n_test_configs', '?')} configurations). Net molecular "
              "force: the error of the sum of each molecule's atomic forces (the intermolecular force); predicting "
              f"zero would give {reference_net(results)}."]
    return "\n".join(lines) + "\n"


def reference_net(results: dict) -> str:
    values = {round(r["errors"]["net_molecular_force_reference_rms"], 3) for r in results["models"].values()
              if "net_molecular_force_reference_rms" in r.get("errors", {})}
    return " / ".join(f"{v:.3f} eV/Å" for v in sorted(values)) or "?"


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = results["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for name, row in results["models"].items():
            t = row.get("timings", {}).get(str(n), {})
            e = row.get("errors", {}).get("forces_rmse")
            if "us_per_atom" not in t or e is None:
                continue
            marker = "*" if name.startswith("mace") else ("s" if name.startswith("atom") else
                                                          "D" if "shipped" in ROWS.get(name, {}) else "o")
            ax.scatter(t["us_per_atom"], e, marker=marker, s=60)
            ax.annotate(name, (t["us_per_atom"], e), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"µs per atom per energy+forces, {n} atoms (1 thread)")
        ax.set_ylabel("test force RMSE (eV/Å)")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", help=f"rows to run (default: all of {', '.join(ROWS)})")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=YAML",
                        help="an extra CGAA row from a training config (timed with atom grains too)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[800, 3200, 9600])
    parser.add_argument("--test-file", default=TEST)
    parser.add_argument("--skip-mace", action="store_true")
    parser.add_argument("--mace-venv", default=os.path.join(HERE, ".venv-mace"))
    parser.add_argument("--mace-device", default="cpu", help="torch device of MACE training and labelling (cpu, cuda)")
    parser.add_argument("--teachers-only", action="store_true",
                        help="train the chosen MACE rows and the chosen rows' teachers, label their teacher data, "
                             "test the MACE rows; no CGAA training, no timing")
    parser.add_argument("--runs", default=os.path.join(HERE, "runs", "pareto"))
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per timing subprocess")
    parser.add_argument("--max-rss-gb", type=float, default=20.0, help="RSS limit per timing subprocess")
    parser.add_argument("--quick", action="store_true", help="one evaluation per timing, no warm-up")
    parser.add_argument("--worker", choices=["cgaa", "mace"], help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--atoms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--atom-grains", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker == "mace":
            result = mace_worker(args.model_path, args.atoms, args.quick)
        else:
            result = cgaa_worker(args.model_path, args.atoms, args.atom_grains, args.quick)
        print(json.dumps(result))
        return
    rows = dict(ROWS)
    for item in args.config:
        name, _, config = item.partition("=")
        rows[name] = dict(config=os.path.abspath(config), atom_timing=True)
    chosen = args.rows if args.rows is not None else list(rows)
    if args.skip_mace:
        chosen = [r for r in chosen if "mace" not in rows[r]]
    unknown = sorted(set(chosen) - set(rows))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {sorted(rows)}")
    os.makedirs(args.runs, exist_ok=True)
    os.makedirs(args.output_dir, exist_ok=True)
    out = os.path.join(args.output_dir, "pareto.json")
    results = read_results(out)
    results.update(machine=machine(), sizes=sorted(set(results.get("sizes", [])) | set(args.sizes)),
                   train_file=os.path.basename(TRAIN), test_file=os.path.basename(args.test_file), threads=1,
                   precision="float32", command="python benchmarks/pareto.py")
    if args.teachers_only:
        for name in chosen:
            spec = rows[name]
            if "distill" in spec:
                teacher_data(spec["distill"], spec.get("sigmas", RATTLE_SIGMAS), args)
            if "mace" in spec:
                path = row_path(name, spec, args)
                errors = test_errors(name, path, "mace", args.test_file, args.mace_venv, args.runs, args.mace_device)
                print(name, json.dumps(errors))
        return
    for name in chosen:
        spec = rows[name]
        path = row_path(name, spec, args)
        kind = "mace" if "mace" in spec else "cgaa"
        row = results["models"].setdefault(name, {})
        row.update(what=describe(name, spec, path), model_file=os.path.relpath(path, ROOT), measured=time.strftime("%F %T"),
                   extra_data=extra_data(spec),
                   errors=test_errors(name, path, kind, args.test_file, args.mace_venv, args.runs, args.mace_device))
        results["n_test_configs"] = row["errors"].get("n_configs")
        row.setdefault("timings", {})
        row.setdefault("atom_grain_timings", {})
        for atoms in sorted(args.sizes):
            row["timings"][str(atoms)] = time_row(name, spec, path, atoms, args)
            save(out, results, [name])
            if "shipped" in spec or spec.get("atom_timing"):
                row["atom_grain_timings"][str(atoms)] = time_row(name, spec, path, atoms, args, atom_grains=True)
                save(out, results, [name])
    results = save(out, results, chosen)
    results["targets"] = targets(results, max(results["sizes"]))
    results = save(out, results, [])
    with open(os.path.join(args.output_dir, "pareto.md"), "w") as f:
        f.write(table(results))
    plot(results, os.path.join(args.output_dir, "pareto.png"))
    print(table(results))


if __name__ == "__main__":
    main()
