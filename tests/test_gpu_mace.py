"""scripts/gpu_mace.py, the GPU MACE timing worker, run here on the CPU.

It needs mace-torch 0.3.16 with its pinned e3nn 0.4.4, which cannot share an interpreter's
site-packages with the project's e3nn 0.6.0. The tests look for it in ``CGAA_MACE_SITE`` (a
PYTHONPATH value: the folder that ``pip install --no-index --no-deps --target`` filled with the
``[mace]`` wheels of scripts/gpu_wheels.txt, plus any folders the machine also needs) run with this
python, then in the python ``CGAA_MACE_PYTHON`` names, then in the benchmarks' MACE venv
(benchmarks/.venv-mace); they skip, saying so, when none imports ``mace.modules``. The comparisons
with mace's own graph (``AtomicData.from_config``: matscipy's neighbour list) and with
mace_run_train's model building also need ``mace.data`` to import there, so matscipy and ase (a
venv with mace-torch installed has them).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "scripts", "gpu_mace.py")
EXAMPLE = os.path.join(ROOT, "example_systems", "ecemc.pdb")
VENV_PYTHON = os.path.join(ROOT, "benchmarks", ".venv-mace", "bin", "python")

PROBE = """
import json, os
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
import mace, mace.modules, e3nn
try:
    import mace.data, mace.tools.model_script_utils  # noqa: F401  (matscipy's neighbour list, ase)
    full = True
except ImportError:
    full = False
print(json.dumps(dict(mace=mace.__version__, e3nn=e3nn.__version__, full=full)))
"""

# mace's own graph (ase + matscipy, AtomicData.from_config, its DataLoader) against the worker's,
# one float64 model evaluated on both: argv = worker, box.npz, size.
REFERENCE = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("gpu_mace", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
import torch
from ase import Atoms
from mace import data, modules
from mace.tools import AtomicNumberTable, torch_geometric
torch.set_default_dtype(torch.float64)
box, size = np.load(sys.argv[2]), sys.argv[3]
r_max = worker.SIZES[size]["r_max"]
atoms = Atoms(numbers=box["numbers"], positions=box["positions"], cell=box["cell"], pbc=True)
graph = data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=AtomicNumberTable(worker.ELEMENTS),
                                    cutoff=r_max)
loader = torch_geometric.dataloader.DataLoader([graph], batch_size=1)
reference = next(iter(loader)).to_dict()
ours = worker.build_graph(worker.load_neighbors(), torch.tensor(box["positions"]),
                          worker.element_index(torch.tensor(box["numbers"])), torch.tensor(box["cell"]), r_max)
model = worker.build_model(size, worker.avg_num_neighbors(ours["edge_index"]), torch.float64)

def edges(g):
    unit = g["unit_shifts"].round().long().tolist()
    return sorted((int(s), int(r), *u) for s, r, u in zip(g["edge_index"][0], g["edge_index"][1], unit))

def shifts_consistent(g):  # shifts == unit_shifts @ cell, as mace's get_neighborhood makes them
    return float((g["shifts"] - g["unit_shifts"] @ g["cell"].view(3, 3)).abs().max())

out_ref = model(reference, training=False, compute_force=True, compute_stress=False)
out = worker.evaluate(model, ours)
e_ref, e = float(out_ref["energy"].detach().sum()), float(out["energy"].detach().sum())
f_ref, f = out_ref["forces"].detach(), out["forces"].detach()
print(json.dumps(dict(
    energy_ref=e_ref, energy=e, energy_rel=abs(e - e_ref) / abs(e_ref),
    max_force=float(f_ref.norm(dim=1).max()), force_diff=float((f - f_ref).abs().max()),
    same_edges=edges(ours) == edges(reference), edges=int(ours["edge_index"].shape[1]),
    edges_ref=int(reference["edge_index"].shape[1]),
    avg_neighbors=worker.avg_num_neighbors(ours["edge_index"]), avg_neighbors_ref=modules.compute_avg_num_neighbors(loader),
    shifts_consistent=max(shifts_consistent(ours), shifts_consistent(reference)))))
"""

# The model of mace_run_train --model=MACE (its argument parser's defaults, check_args, configure_model,
# as mace/cli/run_train.py calls them) against the worker's build_model, same seed: argv = worker.
RUN_TRAIN = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("gpu_mace", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
import torch
from mace.tools import AtomicNumberTable, build_default_arg_parser, check_args
from mace.tools.model_script_utils import configure_model
FLAGS = {"tutorial": ["--num_channels=32", "--max_L=0", "--r_max=4.0"],  # benchmarks/common.py MACE_SIZES
         "medium": ["--num_channels=64", "--max_L=1", "--correlation=3", "--r_max=5.0"]}
result = {}
for size, flags in FLAGS.items():
    args = build_default_arg_parser().parse_args(["--name=x", "--train_file=x.xyz", "--model=MACE",
                                                  "--default_dtype=float32", *flags])
    args, _ = check_args(args)
    args.mean, args.std, args.avg_num_neighbors = 0.0, 1.0, 20.0  # from the data in a real run
    args.compute_energy, args.compute_dipole, args.compute_polarizability = True, False, False
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    reference, _ = configure_model(args, None, np.zeros((1, 3)), heads=["Default"], z_table=AtomicNumberTable([1, 6, 8]))
    ours = worker.build_model(size, 20.0, torch.float32, seed=0)
    a, b = reference.state_dict(), ours.state_dict()
    result[size] = dict(hidden_irreps=str(args.hidden_irreps), same_modules=repr(reference) == repr(ours),
                        same_state=list(a) == list(b) and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a))
print(json.dumps(result))
"""


def _environment(extra: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def mace_python():
    """(python, environment, what it imports) for running mace-torch 0.3.16, or skip."""
    candidates, tried = [], []
    site = os.environ.get("CGAA_MACE_SITE")
    if site:
        path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
        candidates.append((sys.executable, {"PYTHONPATH": path}, f"CGAA_MACE_SITE={site}"))
    for python in (os.environ.get("CGAA_MACE_PYTHON"), VENV_PYTHON):
        if python and os.path.exists(python):
            candidates.append((python, {}, python))
    for python, extra, where in candidates:
        probe = subprocess.run([python, "-c", PROBE], env=_environment(extra), capture_output=True, text=True,
                               timeout=600)
        if probe.returncode == 0:
            found = json.loads(probe.stdout.strip().splitlines()[-1])
            if found["mace"] == "0.3.16" and found["e3nn"].startswith("0.4.4"):
                return python, extra, found
            tried.append(f"{where}: mace-torch {found['mace']}, e3nn {found['e3nn']} (want 0.3.16, 0.4.4)")
        else:
            tried.append(f"{where}: {probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else 'failed'}")
    pytest.skip("no mace-torch 0.3.16 + e3nn 0.4.4 to run scripts/gpu_mace.py with: set CGAA_MACE_SITE to a "
                "folder holding them (scripts/gpu_wheels.txt, [mace] wheels), CGAA_MACE_PYTHON to a python "
                "that has them, or build benchmarks/.venv-mace"
                + (f" (tried {'; '.join(tried)})" if tried else ""))


def write_box(path, move=False):
    """The bundled 800-atom EC/EMC box as the worker's npz; ``move``: every other atom moved by a lattice
    vector, all then translated by a fixed vector: the same periodic system, written differently."""
    from openmm import app, unit
    pdb = app.PDBFile(EXAMPLE)
    positions = np.array(pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    cell = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
    numbers = np.array([a.element.atomic_number for a in pdb.topology.atoms()])
    if move:
        lattice = np.array([[1, 0, -1], [0, 2, 1], [-1, -1, 0]])[np.arange(len(positions)) % 3]
        lattice[1::2] = 0
        positions = positions + lattice @ cell + np.array([1.3, -0.7, 2.1])
    np.savez(path, positions=positions, numbers=numbers, cell=cell)
    return path


def run_worker(mace_python, box, output, size="tutorial"):
    python, extra, _ = mace_python
    result = subprocess.run([python, WORKER, "--size", size, "--system", str(box), "--device", "cpu", "--repeats", "1",
                             "--warmup", "0", "--output", str(output)], env=_environment(extra), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output) as f:
        return json.load(f)


def test_worker_times_mace_on_the_box_and_its_forces_are_periodic(mace_python, tmp_path):
    """The JSON has the timing fields; the energy is finite; the net force vanishes; moving atoms by
    lattice vectors and translating the box leaves energy and largest force unchanged (which a wrong
    sender/receiver order or shift sign in the graph would not)."""
    record = run_worker(mace_python, write_box(tmp_path / "box.npz"), tmp_path / "box.json")
    assert record["status"] == "ok", record.get("error")
    assert (record["size"], record["device"], record["dtype"], record["atoms"]) == ("tutorial", "cpu", "float32", 800)
    assert record["versions"]["mace"] == "0.3.16" and record["versions"]["e3nn"].startswith("0.4.4")
    assert record["hyperparameters"]["hidden_irreps"] == "32x0e" and record["hyperparameters"]["r_max"] == 4.0
    assert len(record["times_ms"]) == len(record["graph_times_ms"]) == 1
    assert 0 < record["graph_median_ms"] < record["median_ms"] == record["times_ms"][0]
    # Both directions of every pair: an even count, 10-40 neighbours within 4 Å in this liquid.
    assert record["edges"] % 2 == 0 and 10 < record["edges"] / 800 < 40
    assert record["avg_num_neighbors"] == pytest.approx(record["edges"] / 800)
    assert np.isfinite(record["energy_eV"]) and record["forces_finite"]
    assert record["max_force_eV_per_A"] > 1e-3  # untrained, but not zero
    # Net force: a sum of equal and opposite pair terms, zero to float32 rounding.
    assert np.abs(record["net_force_eV_per_A"]).max() < 1e-4 * record["max_force_eV_per_A"]

    moved = run_worker(mace_python, write_box(tmp_path / "moved.npz", move=True), tmp_path / "moved.json")
    assert moved["status"] == "ok", moved.get("error")
    assert moved["edges"] == record["edges"]
    assert moved["energy_eV"] == pytest.approx(record["energy_eV"], abs=1e-4, rel=1e-6)
    assert moved["max_force_eV_per_A"] == pytest.approx(record["max_force_eV_per_A"], rel=1e-4)


def test_worker_graph_matches_mace_own_graph(mace_python, tmp_path):
    """Energy and forces of one float64 model on the worker's device-built graph and on mace's own
    (``AtomicData.from_config``, matscipy), and the edges themselves, agree."""
    python, extra, found = mace_python
    if not found["full"]:
        pytest.skip("the MACE environment cannot import mace.data (matscipy, ase): mace's own graph path")
    result = subprocess.run([python, "-c", REFERENCE, WORKER, str(write_box(tmp_path / "box.npz")), "tutorial"],
                            env=_environment(extra), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(result.stdout.strip().splitlines()[-1])
    assert check["same_edges"] and check["edges"] == check["edges_ref"]
    assert check["shifts_consistent"] < 1e-9
    assert check["avg_neighbors"] == pytest.approx(check["avg_neighbors_ref"], rel=1e-12)
    assert check["energy_rel"] < 1e-10
    assert check["force_diff"] < 1e-9 * check["max_force"]


def test_worker_builds_the_model_mace_run_train_builds(mace_python):
    """For both sizes, the worker's model and the one mace_run_train's own code builds from the same
    flags (benchmarks/common.py MACE_SIZES, defaults for the rest) have the same modules and, from the
    same seed, the same weights."""
    python, extra, found = mace_python
    if not found["full"]:
        pytest.skip("the MACE environment cannot import mace.data (matscipy, ase), which mace_run_train's code needs")
    result = subprocess.run([python, "-c", RUN_TRAIN, WORKER], env=_environment(extra), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(result.stdout.strip().splitlines()[-1])
    assert check["tutorial"]["hidden_irreps"] == "32x0e" and check["medium"]["hidden_irreps"] == "64x0e+64x1o"
    for size in ("tutorial", "medium"):
        assert check[size]["same_modules"] and check[size]["same_state"], (size, check[size])
