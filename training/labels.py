"""Where a labelled extended XYZ keeps its energies, forces and stresses, as ASE reads it.

A label is found in two places: under a key of ``atoms.info`` (energy, stress) or
``atoms.arrays`` (forces), as this project and MACE write them (``energy_xtb``, ``REF_energy``),
or in the results of the calculator ASE attaches when it reads a file that another calculator
wrote (``ase.io.write`` after tblite, xtb-python or a DFT code through ASE: ``energy=`` in the
comment line, a ``forces`` column, ``stress=``; ASE moves these into a ``SinglePointCalculator``).
A key given by the user is looked up in both, ``info``/``arrays`` first; without one, the common
names are tried in the order of :data:`AUTO` and the first present is used. Stresses are ASE's:
(1/V) dE/dstrain, 3x3, 9 numbers or 6 in Voigt order (xx, yy, zz, yz, xz, xy); a virial W is
taken as stress = -W / V.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

#: Names tried, in order, when no key is given: (where, key); "calc" is the calculator's results.
AUTO: Dict[str, List[tuple]] = {
    "energy": [("info", "energy"), ("info", "REF_energy"), ("info", "energy_xtb"), ("calc", "energy"),
               ("calc", "free_energy")],
    "forces": [("arrays", "forces"), ("arrays", "REF_forces"), ("arrays", "forces_xtb"), ("calc", "forces")],
    "stress": [("info", "stress"), ("info", "REF_stress"), ("info", "stress_xtb"), ("calc", "stress"),
               ("info", "virial"), ("info", "REF_virial")],
}
#: Where an explicitly named label may be, in order.
HOMES = {"energy": ("info", "calc"), "forces": ("arrays", "calc"), "stress": ("info", "calc")}
#: The command-line flags that name each label.
FLAGS = {"energy": "--energy-key", "forces": "--forces-key", "stress": "--stress-key"}


@dataclass(frozen=True)
class Source:
    """A label's place: ``where`` is ``info``, ``arrays`` or ``calc``; ``key`` its name there."""
    where: str
    key: str

    def __str__(self) -> str:
        return f"'{self.key}' ({'calculator results' if self.where == 'calc' else self.where})"


def _results(atoms) -> dict:
    return getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}


def present(atoms, source: Source) -> bool:
    if source.where == "calc":
        return source.key in _results(atoms)
    return source.key in getattr(atoms, source.where)


def value(atoms, source: Source) -> np.ndarray:
    """The label's numbers as stored (file units)."""
    store = _results(atoms) if source.where == "calc" else getattr(atoms, source.where)
    return np.asarray(store[source.key], dtype=float)


def found(atoms) -> str:
    """What a configuration holds, for error messages."""
    return (f"info keys {sorted(atoms.info)}, per-atom columns {sorted(atoms.arrays)}, "
            f"calculator results {sorted(_results(atoms))}")


def find(atoms, kind: str, key: Optional[str]) -> Optional[Source]:
    """The :class:`Source` of label ``kind`` (energy, forces, stress) in ``atoms``: under ``key``
    if given, else the first of :data:`AUTO` present; None if there is none."""
    candidates = [Source(where, key) for where in HOMES[kind]] if key else [Source(*c) for c in AUTO[kind]]
    return next((source for source in candidates if present(atoms, source)), None)


def stress_tensor(atoms, source: Source) -> np.ndarray:
    """3x3 stress (file units, ASE's sign) from 9 numbers, 6 Voigt numbers, or a virial."""
    raw = value(atoms, source).reshape(-1)
    if raw.shape == (6,):
        xx, yy, zz, yz, xz, xy = raw
        raw = np.array([xx, xy, xz, xy, yy, yz, xz, yz, zz])
    if raw.shape != (9,):
        raise ValueError(f"stress {source} must be 9 numbers (3x3) or 6 (Voigt), not {raw.size}")
    tensor = raw.reshape(3, 3)
    if "virial" in source.key.lower():
        tensor = -tensor / abs(np.linalg.det(np.asarray(atoms.cell)))
    return tensor
