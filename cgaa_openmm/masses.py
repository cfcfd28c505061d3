"""Hydrogen mass repartitioning (HMR), with the meaning of ``app.ForceField.createSystem``'s
``hydrogenMass``: every hydrogen gets that mass, taken from the heavy atom it is bonded to, so
that each molecule's (and the system's) mass is unchanged and its fastest motions, the X-H
stretches, slow down enough for a longer timestep.

The partner comes from the topology's bonds. A hydrogen the topology bonds to nothing (a PDB
without CONECT records, an xyz-made topology) is given the nearest heavy atom of its own grain,
which needs the positions; one with no heavy atom of its grain within
:data:`MAX_PARTNER_DISTANCE` raises. Units: daltons (amu), nm.
"""
from typing import List, Sequence, Tuple

import numpy as np
import openmm
from openmm import app, unit

#: nm: the farthest a hydrogen's partner may be when it is found by distance (1.3 Å).
MAX_PARTNER_DISTANCE = 0.13


def _is_hydrogen(atom: app.topology.Atom) -> bool:
    return atom.element is not None and atom.element.atomic_number == 1


def hydrogen_partners(topology: app.Topology, groups: Sequence[Sequence[int]],
                      positions=None) -> List[Tuple[int, int]]:
    """(hydrogen, heavy atom) index pairs: every H-heavy bond of the topology, and for each
    hydrogen without one, the nearest heavy atom of its grain (``groups``: atom indices of every
    grain) within 1.3 Å in ``positions`` (nm, or a ``Quantity``)."""
    atoms = list(topology.atoms())
    pairs, bonded = [], set()
    for a, b in topology.bonds():
        for h, heavy in ((a, b), (b, a)):
            if _is_hydrogen(h) and heavy.element is not None and not _is_hydrogen(heavy):
                pairs.append((h.index, heavy.index))
                bonded.add(h.index)
    loose = [atom.index for atom in atoms if _is_hydrogen(atom) and atom.index not in bonded]
    if not loose:
        return pairs
    if positions is None:
        first = atoms[loose[0]]
        raise ValueError(f"hydrogen mass repartitioning: {len(loose)} hydrogens have no bond in the topology "
                         f"(first: atom {first.index} ({first.name}) of residue {first.residue.name} "
                         f"{first.residue.id}); pass positions so that each gets the nearest heavy atom of "
                         f"its grain, or give the topology bonds (e.g. CONECT records)")
    if unit.is_quantity(positions):
        positions = positions.value_in_unit(unit.nanometer)
    xyz = np.asarray(positions, dtype=float).reshape(-1, 3)
    owner = {i: k for k, group in enumerate(groups) for i in group}
    for h in loose:
        heavy = [i for i in groups[owner[h]] if atoms[i].element is not None and not _is_hydrogen(atoms[i])]
        distance = np.linalg.norm(xyz[heavy] - xyz[h], axis=1) if heavy else np.array([np.inf])
        nearest = int(np.argmin(distance))
        if distance[nearest] > MAX_PARTNER_DISTANCE:
            atom = atoms[h]
            raise ValueError(f"hydrogen mass repartitioning: hydrogen atom {h} ({atom.name}) of residue "
                             f"{atom.residue.name} {atom.residue.id} has no bond in the topology and no heavy "
                             f"atom of its grain within {10 * MAX_PARTNER_DISTANCE:.1f} Å (nearest: "
                             f"{10 * distance[nearest]:.2f} Å)")
        pairs.append((h, heavy[nearest]))
    return pairs


def repartition_hydrogen_mass(system: openmm.System, partners: Sequence[Tuple[int, int]],
                              hydrogen_mass) -> None:
    """Set every hydrogen of ``partners`` to ``hydrogen_mass`` (daltons or a mass ``Quantity``),
    taking the difference from its partner, in ``system``. A partner left with no positive mass
    raises."""
    if unit.is_quantity(hydrogen_mass):
        hydrogen_mass = hydrogen_mass.value_in_unit(unit.dalton)
    hydrogen_mass = float(hydrogen_mass)
    if not hydrogen_mass > 0:
        raise ValueError(f"hydrogenMass must be a positive mass, not {hydrogen_mass} Da")
    for h, heavy in partners:
        moved = hydrogen_mass - system.getParticleMass(h).value_in_unit(unit.dalton)
        left = system.getParticleMass(heavy).value_in_unit(unit.dalton) - moved
        if left <= 0:
            raise ValueError(f"hydrogen mass repartitioning: atom {heavy} would be left with {left:.3f} Da "
                             f"after giving its hydrogens {hydrogen_mass} Da each; use a smaller hydrogenMass")
        system.setParticleMass(h, hydrogen_mass)
        system.setParticleMass(heavy, left)

