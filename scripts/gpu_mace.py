#!/usr/bin/env python3
"""Time MACE (mace-torch 0.3.16) energy and forces on a periodic box, the neighbour list built on the device.

    PYTHONPATH=MACE_SITE python scripts/gpu_mace.py --size medium --system box.npz --device cuda \\
        --repeats 10 --warmup 3 --output medium.json

``MACE_SITE`` is a folder holding mace-torch 0.3.16 and e3nn 0.4.4 (which it pins) and the few
packages ``mace.modules`` imports that the machine lacks (``scripts/gpu_wheels.txt``, ``[mace]``
lines: ``pip install --no-index --no-deps --no-compile --target MACE_SITE``). ``box.npz`` holds
``positions`` (N, 3, Å), ``numbers`` (N, atomic numbers: H, C, O only) and ``cell`` (3, 3, Å, rows
the box vectors; the box is periodic and every face-to-face width at least 2 r_max).

The model is an untrained ``ScaleShiftMACE`` built as ``mace_run_train --model=MACE`` builds it
with the project's sizes (``benchmarks/common.py`` ``MACE_SIZES``) and mace-torch 0.3.16's
defaults for every other option; its speed does not depend on its weights. ``avg_num_neighbors``
is the box's own (edges per receiving atom, as ``mace.modules.compute_avg_num_neighbors``).

The neighbour list is the project's own cell list (``cgaa_openmm/neighbors.py``, loaded by file
path: it needs only torch), run on the device. One timed evaluation is: neighbour list and
graph, forward, forces (``compute_force=True, compute_stress=False, training=False``), with
``torch.cuda.synchronize()`` around it on CUDA. ``--warmup`` untimed evaluations come first.

Imports only the standard library, numpy, torch, e3nn and mace (never cgaa_openmm, matscipy or
openmm; ``mace.modules`` itself imports ase, for ``ase.data``, so ase is one of the ``[mace]`` wheels).
Sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` before torch and e3nn load (e3nn 0.4.4 needs it with
torch >= 2.6). e3nn 0.4.4 compiles its generated code with TorchScript (``--e3nn-jit on``, as mace
runs): give CUDA runs a few warm-up evaluations (its profiling executor specialises on the first calls).

Writes ``--output`` (JSON): status ("ok", "out of memory" or "error", and the phase it stopped in),
median and all times (ms), graph-building times (ms), peak CUDA memory, atoms, edges, energy, net
and largest force, versions. A CUDA out-of-memory error is reported in the JSON (exit status 0),
not raised.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback

# e3nn 0.4.4 reads its constants with torch.load, which torch >= 2.6 refuses (weights_only) unless
# this is set; mace sets it when imported, but it must be set before e3nn is first imported.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NEIGHBORS = os.path.join(ROOT, "cgaa_openmm", "neighbors.py")
ELEMENTS = [1, 6, 8]  # H, C, O: the z_table of the project's MACE models
#: The project's sizes (benchmarks/common.py MACE_SIZES): num_channels, max_L, r_max (Å); correlation 3.
SIZES = {"tutorial": dict(num_channels=32, max_L=0, r_max=4.0),
         "medium": dict(num_channels=64, max_L=1, r_max=5.0)}
#: mace-torch 0.3.16's mace_run_train defaults for everything else (tools/arg_parser.py).
DEFAULTS = dict(correlation=3, num_interactions=2, max_ell=3, num_radial_basis=8, num_cutoff_basis=5,
                interaction="RealAgnosticResidualInteractionBlock",
                interaction_first="RealAgnosticInteractionBlock",  # what --model=MACE falls back to
                MLP_irreps="16x0e", radial_MLP=[64, 64, 64], radial_type="bessel", gate="silu",
                pair_repulsion=False, distance_transform="None", apply_cutoff=True, use_reduced_cg=False,
                use_so3=False, use_edge_irreps_first=False, edge_irreps=None, use_embedding_readout=False,
                use_last_readout_only=False, use_agnostic_product=False)


def load_neighbors(path: str = NEIGHBORS):
    """The project's neighbour-search module, loaded from its file (it imports only torch and typing)."""
    spec = importlib.util.spec_from_file_location("cgaa_neighbors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hidden_irreps(num_channels: int, max_L: int) -> str:
    """``hidden_irreps`` as mace-torch's ``check_args`` derives it from num_channels and max_L."""
    from e3nn import o3
    return str(o3.Irreps((num_channels * o3.Irreps.spherical_harmonics(max_L)).sort().irreps.simplify()))


def build_model(size: str, avg_num_neighbors: float, dtype: torch.dtype = torch.float32, seed: int = 0,
                e3nn_jit: bool = True):
    """An untrained ``ScaleShiftMACE`` as ``mace_run_train --model=MACE`` builds it for ``size``.

    Atomic energies 0, ``atomic_inter_scale`` 1 and shift 0 (training would take them from the
    data; they are a scale and a shift, no cost), one head ("Default"), no cuEquivariance.
    ``e3nn_jit``: e3nn 0.4.4's default, its generated tensor-product and linear code compiled with
    ``torch.jit.script``; False keeps them as torch.fx modules (a fallback should TorchScript fail)."""
    import e3nn
    from e3nn import o3
    from mace import modules
    e3nn.set_optimization_defaults(jit_script_fx=e3nn_jit)
    hp = dict(DEFAULTS, **SIZES[size])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the buffers (r_max, Bessel weights...) take the default dtype
    try:
        torch.manual_seed(seed)
        model = modules.ScaleShiftMACE(
            r_max=hp["r_max"], num_bessel=hp["num_radial_basis"], num_polynomial_cutoff=hp["num_cutoff_basis"],
            max_ell=hp["max_ell"], interaction_cls=modules.interaction_classes[hp["interaction"]],
            num_interactions=hp["num_interactions"], num_elements=len(ELEMENTS),
            hidden_irreps=o3.Irreps(hidden_irreps(hp["num_channels"], hp["max_L"])),
            edge_irreps=hp["edge_irreps"], atomic_energies=np.zeros((1, len(ELEMENTS))), apply_cutoff=hp["apply_cutoff"],
            avg_num_neighbors=avg_num_neighbors, atomic_numbers=ELEMENTS, use_reduced_cg=hp["use_reduced_cg"],
            use_so3=hp["use_so3"], use_edge_irreps_first=hp["use_edge_irreps_first"], cueq_config=None,
            pair_repulsion=hp["pair_repulsion"], distance_transform=hp["distance_transform"],
            correlation=hp["correlation"], gate=modules.gate_dict[hp["gate"]],
            interaction_cls_first=modules.interaction_classes[hp["interaction_first"]],
            MLP_irreps=o3.Irreps(hp["MLP_irreps"]), atomic_inter_scale=1.0, atomic_inter_shift=[0.0],
            radial_MLP=hp["radial_MLP"], radial_type=hp["radial_type"], heads=["Default"], embedding_specs=None,
            use_embedding_readout=hp["use_embedding_readout"], use_last_readout_only=hp["use_last_readout_only"],
            use_agnostic_product=hp["use_agnostic_product"])
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()


def element_index(numbers: torch.Tensor) -> torch.Tensor:
    """Index of each atom's element in ``ELEMENTS`` (raises for any other element)."""
    table = torch.full((max(ELEMENTS) + 1,), -1, dtype=torch.long, device=numbers.device)
    table[torch.tensor(ELEMENTS, device=numbers.device)] = torch.arange(len(ELEMENTS), device=numbers.device)
    if bool(((numbers < 0) | (numbers > max(ELEMENTS))).any()) or bool((table[numbers] < 0).any()):
        raise ValueError(f"elements other than {ELEMENTS} in the system")
    return table[numbers]


def build_graph(neighbors, positions: torch.Tensor, species: torch.Tensor, cell: torch.Tensor, r_max: float) -> dict:
    """The batch dictionary ``mace.data.AtomicData.from_config`` + its DataLoader would give for one
    periodic configuration, built on ``positions``' device.

    ``neighbor_pairs`` gives ordered pairs (i, j) with ``positions[j] + shift - positions[i]`` within
    ``r_max``, both directions. mace's ``get_neighborhood`` takes matscipy's (i, j, S) as (sender,
    receiver, unit_shifts) with ``shifts = S @ cell``, and ``get_edge_vectors_and_lengths`` forms
    ``positions[receiver] - positions[sender] + shifts``: so sender = i, receiver = j, shifts =
    shift, and unit_shifts = shift @ cell⁻¹ (integers). No self edges (cells are ≥ 2 r_max wide)."""
    i, j, shift = neighbors.neighbor_pairs(positions.detach(), cell, True, r_max)
    with torch.no_grad():
        unit_shifts = torch.round(shift @ torch.linalg.inv(cell))
        node_attrs = torch.nn.functional.one_hot(species, len(ELEMENTS)).to(positions.dtype)
    n = positions.shape[0]
    return {"positions": positions, "cell": cell, "edge_index": torch.stack([i, j]), "shifts": shift,
            "unit_shifts": unit_shifts, "node_attrs": node_attrs,
            "batch": torch.zeros(n, dtype=torch.long, device=positions.device),
            "ptr": torch.tensor([0, n], dtype=torch.long, device=positions.device),
            "head": torch.zeros(1, dtype=torch.long, device=positions.device)}


def avg_num_neighbors(edge_index: torch.Tensor) -> float:
    """Edges per receiving atom, as ``mace.modules.compute_avg_num_neighbors`` counts them."""
    receivers = edge_index[1]
    return receivers.shape[0] / max(1, int(torch.unique(receivers).numel()))


def evaluate(model, graph: dict) -> dict:
    return model(graph, training=False, compute_force=True, compute_stress=False)


def is_out_of_memory(error: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, oom) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "numpy": np.__version__}
    for name, dist in (("e3nn", "e3nn"), ("mace", "mace-torch")):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", None) or version(dist)
            out[name + "_path"] = os.path.dirname(module.__file__)
        except (ImportError, PackageNotFoundError) as error:
            out[name] = f"unavailable: {error}"
    return out


def run(args) -> dict:
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    record = dict(status="running", size=args.size, system=os.path.abspath(args.system), device=args.device,
                  dtype=args.dtype, e3nn_jit=args.e3nn_jit, repeats=args.repeats, warmup=args.warmup, versions=versions(),
                  hyperparameters=dict(DEFAULTS, **SIZES[args.size],
                                       hidden_irreps=hidden_irreps(SIZES[args.size]["num_channels"],
                                                                   SIZES[args.size]["max_L"]),
                                       model="ScaleShiftMACE (mace_run_train --model=MACE)", untrained=True),
                  neighbor_list=os.path.relpath(NEIGHBORS, ROOT) + ": neighbor_pairs (cell list, on the device)",
                  timed="neighbour list + graph + forward + forces (compute_stress=False, training=False)")
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        record["threads"] = torch.get_num_threads()
    record["versions"]["e3nn_expected"] = "0.4.4"
    if not str(record["versions"].get("e3nn", "")).startswith("0.4.4"):
        print(f"warning: e3nn {record['versions'].get('e3nn')} imported, mace-torch 0.3.16 pins 0.4.4", file=sys.stderr)
    system = np.load(args.system)
    positions_np = np.asarray(system["positions"], dtype=np.float64)
    numbers_np = np.asarray(system["numbers"], dtype=np.int64)
    cell_np = np.asarray(system["cell"], dtype=np.float64).reshape(3, 3)
    record["atoms"] = int(positions_np.shape[0])
    r_max = SIZES[args.size]["r_max"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    graph_ms, total_ms = [], []  # kept (partial) when an evaluation fails
    try:
        record["phase"] = "neighbour list"
        neighbors = load_neighbors()
        base = torch.tensor(positions_np, dtype=dtype, device=device)
        cell = torch.tensor(cell_np, dtype=dtype, device=device)
        neighbors.check_box(cell, r_max)
        species = element_index(torch.tensor(numbers_np, device=device))
        first = build_graph(neighbors, base.clone(), species, cell, r_max)
        record["edges"] = int(first["edge_index"].shape[1])
        record["avg_num_neighbors"] = avg_num_neighbors(first["edge_index"])
        del first
        record["phase"] = "model"
        t0 = time.perf_counter()
        model = build_model(args.size, record["avg_num_neighbors"], dtype, e3nn_jit=args.e3nn_jit == "on").to(device)
        record["model_build_s"] = time.perf_counter() - t0
        record["parameters"] = int(sum(p.numel() for p in model.parameters()))

        def once():
            sync()
            t0 = time.perf_counter()
            graph = build_graph(neighbors, base.clone(), species, cell, r_max)
            sync()
            t1 = time.perf_counter()
            out = evaluate(model, graph)
            sync()
            t2 = time.perf_counter()
            return (t1 - t0) * 1e3, (t2 - t0) * 1e3, out

        record["phase"] = "warm-up"
        for _ in range(args.warmup):
            once()
        record["phase"] = "timed evaluations"
        out = None
        for _ in range(args.repeats):
            out = None  # free the last outputs before the next evaluation
            g, t, out = once()
            graph_ms.append(g)
            total_ms.append(t)
        if out is not None:
            forces = out["forces"].detach().double().cpu()
            record.update(energy_eV=float(out["energy"].detach().double().sum()),
                          net_force_eV_per_A=[float(x) for x in forces.sum(0)],
                          max_force_eV_per_A=float(forces.norm(dim=1).max()),
                          forces_finite=bool(torch.isfinite(forces).all()))
        record["status"], record["phase"] = "ok", "done"
    except Exception as error:  # noqa: BLE001  (out of memory is a result; anything else is reported too)
        record["status"] = "out of memory" if is_out_of_memory(error) else "error"
        record["error"] = f"{type(error).__name__}: {error}"[:4000]
        if record["status"] == "error":
            record["traceback"] = traceback.format_exc()[-8000:]
    record.update(times_ms=total_ms, graph_times_ms=graph_ms,
                  median_ms=statistics.median(total_ms) if total_ms else None,
                  graph_median_ms=statistics.median(graph_ms) if graph_ms else None)
    if device.type == "cuda":
        record["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--system", required=True, help="npz with positions (N,3 Å), numbers (N,), cell (3,3 Å, rows)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--e3nn-jit", choices=["on", "off"], default="on",
                        help="e3nn's jit_script_fx (on: its default, what mace runs with; off: a fallback)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"torch {torch.__version__} sees no CUDA device")
    record = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(record, f, indent=1)
    summary = {k: record.get(k) for k in ("status", "size", "device", "atoms", "edges", "median_ms", "graph_median_ms",
                                          "max_memory_allocated_bytes", "energy_eV", "error")}
    print(json.dumps(summary))
    return 0 if record["status"] in ("ok", "out of memory") else 1


if __name__ == "__main__":
    sys.exit(main())
