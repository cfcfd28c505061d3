"""Helpers the benchmark scripts share: machine description, timing loop, monitored workers,
the tiled EC/EMC boxes, resumable CGAA training, MACE's venv and errors, and the liquid-box
energies, pressures and result files of the condensed-phase scripts.

Standard library and numpy at import time only: the MACE worker imports this module from
MACE's own virtual environment, where ``cgaa_openmm`` does not import (e3nn 0.4.4 there).
"""
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "carbonates"))
BOX = os.path.join(ROOT, "example_systems", "ecemc.pdb")
#: Atoms -> copies of the 800-atom box along a, b, c.
TILINGS = {800: (1, 1, 1), 3200: (2, 2, 1), 9600: (2, 2, 3), 28800: (3, 3, 4), 100000: (5, 5, 5)}
KJ_PER_EV = 96.48533212331
AVOGADRO = 6.02214076e23
BAR_PER_EV_PER_A3 = 1.602176634e6
MACE_VERSION = "0.3.16"
#: OpenMP threads that wait passively: on a shared machine, spinning ones wait for descheduled
#: partners (10x slower evaluations measured with 2 threads on 2 busy cores).
WORKER_ENV = dict(OMP_WAIT_POLICY="PASSIVE")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict:
    return dict(cpu=cpu_model(), cores=os.cpu_count(), python=platform.python_version())


def rss_mb(pid="self") -> float:
    """Resident set size of a process (MB)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def source_module(path: str, name: str):
    """A module loaded from a file path (a script's or example builder's functions, without
    putting its folder on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tile(tiles) -> tuple:
    """``(topology, positions in nm)`` of the bundled 800-atom EC/EMC box repeated ``tiles``
    (copies along a, b, c) times (``example_systems/build_ecemc.py``'s ``tile``)."""
    builder = source_module(os.path.join(ROOT, "example_systems", "build_ecemc.py"), "build_ecemc")
    return builder.tile(BOX, tuple(tiles))


def tiled_box(atoms: int) -> tuple:
    """:func:`tile` of the box to ``atoms`` atoms (a key of ``TILINGS``)."""
    return tile(TILINGS[atoms])


def median_time(evaluate, repeats: int, warmup: int = 2, slow_s: float = float("inf")) -> dict:
    """Median wall time (ms) of ``repeats`` calls of ``evaluate`` after ``warmup`` calls
    (TorchScript profiles on the first call and optimises on the second); 3 calls only when a
    warm-up call took more than ``slow_s`` seconds, and one warm-up and one call when one took
    more than 6 ``slow_s`` (the atom-grain baseline at 9,600 atoms)."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        evaluate()
        elapsed = time.perf_counter() - t0
        if elapsed > slow_s:
            repeats = min(repeats, 3)
        if elapsed > 6 * slow_s:
            repeats = 1
            break
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate()
        times.append(1e3 * (time.perf_counter() - t0))
    return dict(median_ms=statistics.median(times), times_ms=times)


def available_mb() -> float:
    """MemAvailable of the machine (MB)."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable:"))


def launch(command, log: str, timeout: float, max_rss_mb: float, threads: int = 1) -> dict:
    """Run a worker subprocess (its own process group, ``threads`` OpenMP threads); kill it past
    ``timeout`` s or ``max_rss_mb`` of RSS. Returns the JSON of its last stdout line with
    ``status="ok"`` and ``wall_s``, or a ``status`` saying why not (with ``max_rss_seen_mb``)."""
    import json
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **WORKER_ENV)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        seen, killed = 0.0, None
        while proc.poll() is None:
            try:
                seen = max(seen, rss_mb(proc.pid))
            except (OSError, StopIteration):  # exited meanwhile
                pass
            if seen > max_rss_mb:
                killed = f"out of memory: killed at {seen / 1024:.1f} GB RSS (limit {max_rss_mb / 1024:.1f} GB)"
            elif time.time() - t0 > timeout:
                killed = f"timeout: killed after {timeout:.0f} s"
            if killed:
                os.killpg(proc.pid, 9)
                proc.wait()
                break
            time.sleep(0.2)
    wall = time.time() - t0
    if killed:
        return dict(status=killed, wall_s=wall, max_rss_seen_mb=seen)
    lines = open(log).read().strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = "killed by signal 9 (the kernel's OOM killer?)" if proc.returncode == -9 else f"exit {proc.returncode}"
        return dict(status=f"failed: {reason}; log {os.path.relpath(log, ROOT)}: {' | '.join(lines[-3:])}",
                    wall_s=wall, max_rss_seen_mb=seen)
    return dict(json.loads(lines[-1]), status="ok", wall_s=wall)


def mace_python(venv: str, build: bool = True):
    """The python of MACE's own venv (``--system-site-packages`` + mace-torch ``MACE_VERSION``), built
    on first use if ``build``; None if it does not exist and is not built."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python) and build:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", f"mace-torch=={MACE_VERSION}"], check=True)
    return python if os.path.exists(python) else None


def train_cgaa(config_path: str, name: str, runs: str, overrides: dict = None) -> str:
    """Train (or resume, or reuse when its config is unchanged) a CGAA model from a training
    config, with ``overrides`` of its options (``model`` ones merged into its hyperparameters)
    and ``output``/``run_dir`` under ``runs``; returns the model file's path."""
    import yaml

    from cgaa_openmm.modelfile import load_model
    from training.config import config_hash, load_config
    runs = os.path.abspath(runs)
    overrides = dict(overrides or {})
    config = load_config(config_path)
    config["model"] = dict(config["model"], **overrides.pop("model", {}))  # hyperparameters merge
    config.update(overrides)
    config["output"] = os.path.join(runs, f"{name}.pt")
    config["run_dir"] = os.path.join(runs, name)
    os.makedirs(runs, exist_ok=True)
    path = os.path.join(runs, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    if os.path.exists(config["output"]):
        _, metadata = load_model(config["output"])
        if metadata["training"]["config_sha256"] == config_hash(load_config(path)):
            return config["output"]
    command = [sys.executable, "-m", "cgaa_openmm.cli", "train", path]
    if os.path.exists(os.path.join(config["run_dir"], "checkpoint.pt")):
        command.append("--resume")
    print(f"== training {name}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=dict(os.environ, **WORKER_ENV))
    return config["output"]


#: mace_run_train options of the MACE sizes: the tutorial's, and the medium model of the brief.
MACE_SIZES = {
    "tutorial": ["--num_channels=32", "--max_L=0", "--r_max=4.0", "--max_num_epochs=100", "--start_swa=80"],
    "medium": ["--num_channels=64", "--max_L=1", "--correlation=3", "--r_max=5.0",
               "--max_num_epochs=150", "--start_swa=120"],
}


def train_mace(size: str, venv: str, work: str, threads: int = 1, device: str = "cpu") -> str:
    """Train (or resume, or reuse) MACE of ``size`` on the 200 configurations in ``work`` with
    ``mace_run_train`` in its own venv (built on first use) as its tutorials do (E0s from the
    file's isolated atoms, float64, EMA, AMSGrad, an SWA stage with a high energy weight) on
    ``device`` (``cpu`` or ``cuda``: the same float64 training, hours faster for the medium size);
    returns the stage-two model's path (the tutorial's model)."""
    mace_python(venv)
    os.makedirs(work, exist_ok=True)
    stage_two = os.path.join(work, f"mace-{size}_stagetwo.model")
    if not os.path.exists(stage_two):
        command = [os.path.join(venv, "bin", "mace_run_train"), f"--name=mace-{size}", "--work_dir=.",
                   f"--train_file={os.path.join(DATA, 'solvent_xtb_train_200.xyz')}", "--valid_fraction=0.10",
                   "--E0s=isolated", "--energy_key=energy_xtb", "--forces_key=forces_xtb", "--model=MACE",
                   "--batch_size=10", "--swa", "--ema", "--ema_decay=0.99", "--amsgrad", f"--device={device}",
                   "--default_dtype=float64", "--seed=123", "--restart_latest", *MACE_SIZES[size]]
        print(f"== training MACE ({size}): {' '.join(command)}", flush=True)
        t0 = time.time()
        with open(os.path.join(work, "train.log"), "a") as log:
            subprocess.run(command, check=True, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                           env=dict(os.environ, OMP_NUM_THREADS=str(threads), **WORKER_ENV))
        with open(os.path.join(work, "train_minutes.txt"), "w") as f:
            f.write(f"{(time.time() - t0) / 60:.1f} minutes, {threads} threads, device {device}\n")
    on_cpu = stage_two + ".cpu-loadable"
    if not os.path.exists(on_cpu):     # also after a conversion that failed or was interrupted
        minutes = os.path.join(work, "train_minutes.txt")
        # "... minutes, N threads, device D"; older records name no device: CPU
        record = open(minutes).read() if os.path.exists(minutes) else ""
        if "device " in record and record.rsplit("device ", 1)[1].strip() != "cpu":
            mace_to_cpu(venv, stage_two)
        open(on_cpu, "w").close()
    return stage_two


#: Re-saves a pickled MACE model with its TorchScript parts (e3nn's code-generated modules) on the
#: CPU: ``torch.load(map_location="cpu")`` does not reach them, so a model saved on a GPU does not
#: load on a machine without one.
_MACE_TO_CPU = """
import sys, torch
jit_load = torch.jit.load
torch.jit.load = lambda f, map_location=None, _extra_files=None: jit_load(f, map_location="cpu")
model = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
torch.jit.load = jit_load
torch.save(model.to("cpu"), sys.argv[1] + ".tmp")
"""


def mace_to_cpu(venv: str, path: str) -> None:
    """Make the MACE model file ``path`` (trained on a GPU) loadable on a CPU-only machine, in place."""
    subprocess.run([mace_python(venv), "-c", _MACE_TO_CPU, path], check=True)
    os.replace(path + ".tmp", path)


def mace_errors(predictions: str) -> dict:
    """Errors of ``mace_eval_configs`` predictions (``MACE_energy``/``MACE_forces``) against the file's
    xTB labels, clusters only."""
    import numpy as np
    import torch
    from ase.io import read

    from training.metrics import error_metrics
    frames = [a for a in read(predictions, index=":") if a.info.get("config_type") != "IsolatedAtom"]
    e_pred = torch.tensor([a.info["MACE_energy"] for a in frames])
    e_ref = torch.tensor([a.info["energy_xtb"] for a in frames])
    n = torch.tensor([float(len(a)) for a in frames])
    f_pred = torch.tensor(np.concatenate([a.arrays["MACE_forces"] for a in frames]))
    f_ref = torch.tensor(np.concatenate([a.arrays["forces_xtb"] for a in frames]))
    return dict(error_metrics(e_pred, e_ref, n, f_pred, f_ref), n_configs=len(frames))


def pressure(energy, volume, scales, low: float = 0.99, high: float = 1.01):
    """Configurational pressure (bar) per frame, -dE/dV from the ``low`` and ``high`` scale columns.

    ``energy`` (frames, scales) eV, ``volume`` (frames, scales) Å^3; None without those scales.
    """
    if low not in scales or high not in scales:
        return None
    a, b = scales.index(low), scales.index(high)
    return -(energy[:, b] - energy[:, a]) / (volume[:, b] - volume[:, a]) * BAR_PER_EV_PER_A3


def saved_run(path: str, settings: dict, keys) -> dict:
    """The run saved in the JSON file ``path`` (None if there is none); exits, naming every
    difference, if it was made with other values of ``keys`` than ``settings`` has."""
    if not os.path.exists(path):
        return None
    with open(path) as file:
        saved = json.load(file)
    changed = [f"{key} {saved['settings'].get(key)!r} -> {settings[key]!r}" for key in keys
               if saved["settings"].get(key) != settings[key]]
    if changed:
        raise SystemExit(f"{path} holds a run with other settings ({'; '.join(changed)}): choose another "
                         f"folder, or delete it to start again")
    return saved


def save_results(output: str, stem: str, results: dict, fig=None) -> None:
    """Write ``OUTPUT/STEM.json`` and, with a figure, ``OUTPUT/STEM.png``."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, f"{stem}.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    if fig is not None:
        fig.tight_layout()
        fig.savefig(os.path.join(output, f"{stem}.png"), dpi=150)
    print(f"wrote {output}/{stem}.json" + (f" and {stem}.png" if fig is not None else ""))


def model_energies(model: str, topology_file: str, boxes):
    """Energy (eV) of each ase.Atoms box with the CGAA model ``model`` (Reference platform)."""
    import numpy as np
    import openmm
    from openmm import app, unit

    from cgaa_openmm import CGAAPotential
    topology = app.PDBFile(topology_file).topology
    system = CGAAPotential.load(model).createSystem(topology, precision="single")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies = []
    for atoms in boxes:
        context.setPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
        context.setPositions(atoms.positions * 0.1)
        energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        energies.append(energy / KJ_PER_EV)
    return np.array(energies)
