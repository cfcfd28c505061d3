"""Quantum labels for configurations: GFN2-xTB energies and forces from ``tblite``.

``label`` appends each labelled configuration to an extended XYZ file as soon as it is
done, so an interrupted run loses at most the configurations in flight; run it again
and the configurations whose ``label_id`` is already in the file are skipped. The
settings and software versions are written beside the output (``OUTPUT.json``).

Units: positions Å; ``energy_xtb`` eV (total energy, not referenced); ``forces_xtb`` eV/Å;
for periodic cells ``stress_xtb`` eV/Å^3 (3x3, row-major; ASE's sign: (1/V) dE/dstrain, so the
pressure is minus a third of its trace).
The labels are those of the carbonate data set (tblite reproduces its energies to 2e-4 eV
and forces to 5e-4 eV/Å), so new configurations can be added to it.
"""
import json
import multiprocessing
import os
import platform
import time
from typing import Any, Dict, List, Sequence

import numpy as np
from ase import Atoms
from ase.io import read, write
from tqdm import tqdm

METHODS = ("GFN2-xTB", "GFN1-xTB")


class LabelError(ValueError):
    """Configurations that cannot be labelled as given (the message names the configuration)."""


def versions() -> Dict[str, str]:
    """Versions of the software that makes the labels."""
    from importlib.metadata import version
    return {name: version(name) for name in ("tblite", "ase", "numpy")} | {"python": platform.python_version()}


def _label_one(job):
    """Worker: (label_id, Atoms, settings) -> (label_id, Atoms with labels) or (label_id, error text)."""
    label_id, atoms, settings = job
    from tblite.ase import TBLite
    atoms = atoms.copy()
    atoms.calc = TBLite(method=settings["method"], accuracy=settings["accuracy"],
                        electronic_temperature=settings["electronic_temperature"],
                        max_iterations=settings["max_iterations"],
                        charge=float(atoms.info.get("charge", 0)), multiplicity=int(atoms.info.get("uhf", 0)) + 1,
                        verbosity=0)
    try:
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else None
    except Exception as error:  # tblite raises RuntimeError/ValueError on SCF failure
        return label_id, f"{type(error).__name__}: {error}"
    atoms.calc = None
    atoms.info["energy_xtb"] = float(energy)
    atoms.arrays["forces_xtb"] = np.asarray(forces, dtype=float)
    if stress is not None:
        atoms.info["stress_xtb"] = np.asarray(stress, dtype=float).reshape(9)
    return label_id, atoms


def done_ids(output: str) -> set:
    """``label_id`` of every configuration already in ``output`` (empty if it does not exist)."""
    if not os.path.exists(output) or os.path.getsize(output) == 0:
        return set()
    return {str(atoms.info.get("label_id")) for atoms in read(output, index=":")}


def label(frames: Sequence[Atoms], output: str, workers: int = 1, method: str = "GFN2-xTB",
          accuracy: float = 1.0, electronic_temperature: float = 300.0, max_iterations: int = 250,
          progress: bool = True) -> str:
    """Label ``frames`` with tblite and append them to the extended XYZ ``output``.

    Every frame needs a unique ``info["label_id"]`` (frames without one get their index).
    Charge: ``info["charge"]`` (e); unpaired electrons: ``info["uhf"]``; a periodic frame
    (``pbc`` all true) is computed in its cell. ``workers`` processes each run one OpenMP
    thread. Frames whose SCF fails are listed under ``failed`` in ``OUTPUT.json`` and left
    out. Returns ``output``.
    """
    if method not in METHODS:
        raise LabelError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    frames = list(frames)
    ids: List[str] = []
    for index, atoms in enumerate(frames):
        label_id = str(atoms.info.setdefault("label_id", str(index)))
        positions = atoms.get_positions()
        if not np.isfinite(positions).all():
            raise LabelError(f"configuration {label_id}: non-finite coordinates")
        if any(atoms.pbc) and not all(atoms.pbc):
            raise LabelError(f"configuration {label_id}: partly periodic cells are not supported")
        ids.append(label_id)
    if len(set(ids)) != len(ids):
        raise LabelError("label_id values are not unique")

    settings = dict(method=method, accuracy=accuracy, electronic_temperature=electronic_temperature,
                    max_iterations=max_iterations)
    done = done_ids(output)
    todo = [(label_id, atoms, settings) for label_id, atoms in zip(ids, frames) if label_id not in done]
    record_path = output + ".json"
    record: Dict[str, Any] = {}
    if os.path.exists(record_path):
        with open(record_path) as handle:
            record = json.load(handle)
    record.update(settings=settings, units={"positions": "angstrom", "energy_xtb": "eV", "forces_xtb": "eV/angstrom",
                         "stress_xtb": "eV/angstrom^3, (1/V) dE/dstrain, periodic cells only"},
                  versions=versions(), requested=len(frames))
    failed: Dict[str, str] = dict(record.get("failed", {}))
    start = time.perf_counter()

    def results():
        if workers <= 1:
            yield from map(_label_one, todo)
            return
        # Each worker: one OpenMP thread (tblite reads OMP_NUM_THREADS when it is loaded).
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                yield from pool.imap_unordered(_label_one, todo)
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS")
            else:
                os.environ["OMP_NUM_THREADS"] = previous

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    bar = tqdm(total=len(frames), initial=len(frames) - len(todo), desc="tblite", unit="config",
               disable=not progress)
    written = 0
    for label_id, result in results():
        if isinstance(result, str):
            failed[label_id] = result
        else:
            write(output, result, format="extxyz", append=True)
            written += 1
        bar.update()
    bar.close()
    record.update(failed=failed, labelled=len(done) + written,
                  seconds_this_run=round(time.perf_counter() - start, 2))
    with open(record_path, "w") as handle:
        json.dump(record, handle, indent=1)
    return output


def main(args) -> None:
    """``cgaa-openmm label IN OUT``: label every configuration of an extended XYZ file."""
    try:
        frames = read(args.input, index=":")
    except FileNotFoundError:
        raise LabelError(f"file not found: {args.input}") from None
    label(frames, args.output, workers=args.workers, method=args.method, accuracy=args.accuracy,
          electronic_temperature=args.electronic_temperature)


def add_arguments(parser) -> None:
    parser.add_argument("input", help="extended XYZ of configurations (a per-atom molID column is kept)")
    parser.add_argument("output", help="labelled extended XYZ; appended to, and resumed if it exists")
    parser.add_argument("--workers", type=int, default=1, help="processes, one OpenMP thread each")
    parser.add_argument("--method", default="GFN2-xTB", choices=METHODS)
    parser.add_argument("--accuracy", type=float, default=1.0, help="tblite numerical accuracy")
    parser.add_argument("--electronic-temperature", type=float, default=300.0, help="K")
