"""openmm-ml plugin: ``openmmml.MLPotential("cgaa", modelPath=...)``.

Registered through the ``openmmml.potentials`` entry point in ``setup.py``, so
openmm-ml's own ``createSystem`` and ``createMixedSystem`` build CGAA systems::

    from openmmml import MLPotential
    potential = MLPotential("cgaa", modelPath="carbonates-xtb")   # or a model file path
    system = potential.createSystem(pdb.topology)
    mixed = potential.createMixedSystem(pdb.topology, mm_system, ml_atoms)

Units are OpenMM's (nm, kJ/mol), as for :class:`~cgaa_openmm.CGAAPotential`.
Besides the CGAA ``TorchForce``, the ML atoms get zero-energy bonds inside each
grain: createMixedSystem removes the force field's bonds between ML atoms, and
without them a ``MonteCarloBarostat`` would scale the atoms of a grain apart.

The classes follow openmm-ml's ``MLPotentialImplFactory``/``MLPotentialImpl``
interface (``createImpl``, ``addForces``) without importing openmmml: openmm-ml
imports this module while its own import is still running.
"""
from typing import Iterable, Optional

import openmm
from openmm import app

from .grains import GrainSpec
from .potential import CGAAPotential


class CGAAPotentialImplFactory:
    """Makes :class:`CGAAPotentialImpl` for ``MLPotential("cgaa", ...)``."""

    def createImpl(self, name: str, modelPath: str, grains: GrainSpec = "residue",
                   allowUnknownGrains: bool = False) -> "CGAAPotentialImpl":
        """``modelPath``: a model file or a shipped model name (``"carbonates-xtb"``);
        ``grains`` and ``allowUnknownGrains`` as in :meth:`CGAAPotential.createForce`."""
        return CGAAPotentialImpl(CGAAPotential.load(modelPath), grains, allowUnknownGrains)


class CGAAPotentialImpl:
    """Adds the CGAA force (and grain bonds) of a loaded :class:`CGAAPotential`."""

    def __init__(self, potential: CGAAPotential, grains: GrainSpec, allowUnknownGrains: bool):
        self.potential = potential
        self.grains = grains
        self.allowUnknownGrains = allowUnknownGrains

    def addForces(self, topology: app.Topology, system: openmm.System, atoms: Optional[Iterable[int]],
                  forceGroup: int, grains: Optional[GrainSpec] = None, precision: str = "auto") -> None:
        """Add the CGAA energy of ``atoms`` (all atoms when None) to ``system``, in ``forceGroup``.

        ``grains`` (a ``createSystem``/``createMixedSystem`` keyword) overrides
        the grains given to ``MLPotential``; ``precision`` (also a keyword there, as for
        openmm-ml's MACE) is that of :meth:`CGAAPotential.createModule`. The force is periodic when the
        topology has a box or the system is periodic.
        """
        grains = self.grains if grains is None else grains
        periodic = topology.getPeriodicBoxVectors() is not None or system.usesPeriodicBoundaryConditions()
        force = self.potential.createForce(topology, grains, periodic, self.allowUnknownGrains, atoms, precision)
        bonds = self.potential.createGrainBonds(topology, grains, atoms)
        for added in (force, bonds):
            added.setForceGroup(forceGroup)
            system.addForce(added)
