"""``CGAAPotential``: a trained model file turned into OpenMM forces and systems.

Units are converted here and only here, with ``openmm.unit``: OpenMM gives
positions and box vectors in nm and wants energies in kJ/mol; the model works
in Å and eV.
"""
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import openmm
import torch
from openmm import app, unit

from .corecache import cached_core, core_key
from .correction import TailEnergy, correction_of
from .grains import (GrainSpec, as_openmm_topology, atom_selection, grain_groups, grain_index, grain_name,
                     hill_formula, selected_grain_groups)
from .masses import hydrogen_partners, repartition_hydrogen_mass
from .mixed import mixed_system, region_atoms
from .model import CGAAModel, model_in, unscripted_codegen
from .modelfile import load_model, save_model
from .neighbors import check_box
from .groups import grain_topology
from .torchforce import CGAACore, CGAAEnergy, CGAAEnergyAndForces, compiled_core, core_kind, plain_executor

#: Å per nm and kJ/mol per eV (per particle: eV times Avogadro's number).
ANGSTROM_PER_NM = (1.0 * unit.nanometer).value_in_unit(unit.angstrom)
KJ_PER_MOL_PER_EV = (1.0 * unit.elementary_charge * unit.volt * unit.AVOGADRO_CONSTANT_NA).value_in_unit(
    unit.kilojoule_per_mole)

#: Models shipped inside the package, by name.
NAMED_MODELS: Dict[str, str] = {"carbonates-xtb": "carbonates-xtb.pt",
                                "carbonates-xtb-fast": "carbonates-xtb-fast.pt",
                                "ace-ala-nme-xtb": "ace-ala-nme-xtb.pt",
                                "rdx-xtb": "rdx-xtb.pt"}


def resolve_model_path(path_or_name: str) -> str:
    """The file of a shipped model name (see ``NAMED_MODELS``), or ``path_or_name`` if it exists."""
    if path_or_name in NAMED_MODELS:
        return os.path.join(os.path.dirname(__file__), "models", NAMED_MODELS[path_or_name])
    if os.path.exists(path_or_name):
        return path_or_name
    raise FileNotFoundError(f"{path_or_name!r} is neither a model file nor a shipped model "
                            f"(shipped: {sorted(NAMED_MODELS)})")


#: The ``precision`` choices of :meth:`CGAAPotential.createModule` with a fixed dtype.
PRECISIONS = {"single": torch.float32, "double": torch.float64, "auto": None}


class TopologyMismatchError(ValueError):
    """The topology holds atoms or grains the model was not trained on."""


class CGAAPotential:
    """A trained CGAA model and its metadata.

    Example::

        pot = CGAAPotential.load("carbonates-xtb")
        system = pot.createSystem(pdb.topology)      # one grain per residue
    """

    def __init__(self, model: CGAAModel, metadata: Dict):
        self.model = model
        self.metadata = metadata
        self._cores: Dict[tuple, torch.jit.ScriptModule] = {}

    @classmethod
    def load(cls, path_or_name: str) -> "CGAAPotential":
        """Load a model file, or a shipped model by name (see ``NAMED_MODELS``)."""
        with unscripted_codegen():
            return cls(*load_model(resolve_model_path(path_or_name)))

    def save(self, path: str) -> None:
        """Write the model file."""
        save_model(path, self.model, self.metadata)

    def atomGrainBaseline(self, cutoff: float = 5.0) -> "CGAAPotential":
        """The all-atom baseline of this model, for speed comparisons: the same code and
        hyperparameters with every atom its own grain and a ``cutoff`` (Å) between atoms, with
        untrained weights (speed does not depend on them). Use it with ``grains="atom"``."""
        hyperparameters = dict(self.model.hyperparameters, grain_cutoff=float(cutoff))
        model = CGAAModel(self.model.elements, self.model.atomic_energies.tolist(), **hyperparameters)
        return CGAAPotential(model.to(self.model.atomic_energies.dtype),
                             dict(self.metadata, grains="atom", grain_formulas=[]))

    @property
    def cutoff(self) -> unit.Quantity:
        """Radius of the grain-centre graph."""
        return self.model.grain_cutoff * unit.angstrom

    def _grains(self, topology: app.Topology, grains: GrainSpec, allowUnknownGrains: bool,
                atoms: Optional[Iterable[int]] = None):
        """Species and grain index of the selected atoms, checked against the model, and a name
        for every grain (for error messages).

        Also returns the selected atoms (sorted topology indices), which the first two index.
        """
        selected = atom_selection(topology, atoms)
        known = {z: i for i, z in enumerate(self.model.elements)}
        known_names = ", ".join(app.Element.getByAtomicNumber(z).symbol for z in self.model.elements)
        atom_list = list(topology.atoms())
        species = []
        for atom in (atom_list[i] for i in selected):
            where = f"atom {atom.index} ({atom.name}) of residue {atom.residue.name} {atom.residue.id}"
            if atom.element is None:
                raise TopologyMismatchError(f"{where} has no element")
            if atom.element.atomic_number not in known:
                raise TopologyMismatchError(f"{where} is {atom.element.symbol}, an element this model does not "
                                            f"know (it knows {known_names})")
            species.append(known[atom.element.atomic_number])
        groups = selected_grain_groups(topology, grains, selected)
        formulas = set(self.metadata.get("grain_formulas", []))
        if formulas and not allowUnknownGrains:
            for group in groups:
                formula = hill_formula([atom_list[i].element.atomic_number for i in group])
                if formula not in formulas:
                    first = atom_list[group[0]].residue
                    raise TopologyMismatchError(
                        f"grain of {len(group)} atoms starting in residue {first.name} {first.id} has formula "
                        f"{formula}, which is not a grain this model was trained on (grains: "
                        f"{self.metadata.get('grains', '?')}; known formulas: {sorted(formulas)}). Choose other "
                        f"grains, or pass allowUnknownGrains=True to extrapolate.")
        local = np.full(topology.getNumAtoms(), -1, dtype=np.int64)
        local[selected] = np.arange(len(selected))
        return (torch.tensor(species, dtype=torch.long),
                torch.tensor(grain_index([local[g] for g in groups], len(selected)), dtype=torch.long),
                [grain_name(atom_list, group) for group in groups],
                torch.tensor(selected, dtype=torch.long))

    def createModule(self, topology, grains: GrainSpec = "residue", periodic: Optional[bool] = None,
                     allowUnknownGrains: bool = False, atoms: Optional[Iterable[int]] = None,
                     outputsForces: bool = False, precision: str = "auto") -> torch.nn.Module:
        """The eager ``torch.nn.Module``: positions (nm) [, box (nm)] -> energy (kJ/mol), or with
        ``outputsForces`` -> (energy, forces (kJ/mol/nm)) (:class:`~cgaa_openmm.torchforce.CGAAEnergyAndForces`).

        ``periodic`` defaults to whether the topology has periodic box vectors
        (an ``mdtraj.Topology`` never has: pass ``periodic=True`` for a periodic one).
        ``atoms`` (topology indices) restricts the model to those atoms, the ML
        region of a mixed system: the module still takes the positions of all
        atoms, returns the energy of the region alone, and leaves every other atom
        without force. Its grains are the topology's restricted to ``atoms``; a
        grain only partly in ``atoms`` raises ``ValueError``. Explicit ``grains``
        groups use topology indices and must cover ``atoms``.

        ``precision``: ``"single"`` computes in float32, ``"double"`` in float64, and
        ``"auto"`` (default) in the precision of the positions it is given
        (a float32 and a float64 copy of the model, :class:`~cgaa_openmm.torchforce.CGAAEnergy`): float64 on OpenMM's Reference and CPU
        platforms and with ``Precision=double``, float32 otherwise. The energy is summed in
        float64 in every case.
        """
        return self._module(topology, grains, periodic, allowUnknownGrains, atoms, outputsForces, precision,
                            lambda dtype, kind: self._model_in(dtype))

    def _module(self, topology, grains: GrainSpec, periodic: Optional[bool], allowUnknownGrains: bool,
                atoms: Optional[Iterable[int]], outputsForces: bool, precision: str, core) -> CGAAEnergy:
        """The module of ``topology`` around ``core(dtype)`` (a model or a compiled core) of each
        precision it can run in (arguments: :meth:`createModule`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        topology = as_openmm_topology(topology)
        box = topology.getPeriodicBoxVectors()
        if periodic is None:
            periodic = box is not None
        if periodic and box is not None:
            cell = torch.tensor(np.array(box.value_in_unit(unit.angstrom)), dtype=torch.float64)
            check_box(cell, self.model.grain_cutoff)
        species, grain, names, selected = self._grains(topology, grains, allowUnknownGrains, atoms)
        selected = None if atoms is None else selected
        kind = core_kind(grain_topology(species, grain, periodic, atoms=selected))
        module = CGAAEnergyAndForces if outputsForces else CGAAEnergy
        single, double = ((core(PRECISIONS[precision], kind), None) if precision != "auto"
                          else (core(torch.float32, kind), core(torch.float64, kind)))
        return module(single, species, grain, periodic, ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, selected,
                      grain_names=names, double=double)

    def _model_in(self, dtype: torch.dtype) -> CGAAModel:
        """The model with its weights in ``dtype`` (:func:`~cgaa_openmm.model.model_in`)."""
        with unscripted_codegen():
            return model_in(self.model, dtype)

    def compiledCore(self, dtype: torch.dtype, kind: Dict[str, bool]) -> torch.jit.ScriptModule:
        """The model compiled for forces in ``dtype`` on systems of ``kind``
        (:func:`~cgaa_openmm.torchforce.core_kind`; :func:`~cgaa_openmm.torchforce.compiled_core`):
        made on first use (or loaded from the disk cache, :mod:`cgaa_openmm.corecache`), then kept
        and shared by every force this potential makes for such systems."""
        key = (dtype,) + tuple(sorted(kind.items()))
        if key not in self._cores:
            self._cores[key] = cached_core(
                core_key(self.model, dtype, kind),
                lambda: compiled_core(CGAACore(self._model_in(dtype), ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, **kind)))
        return self._cores[key]

    def createForce(self, topology, grains: GrainSpec = "residue", periodic: Optional[bool] = None,
                    allowUnknownGrains: bool = False, atoms: Optional[Iterable[int]] = None,
                    precision: str = "auto"):
        """An ``openmmtorch.TorchForce`` holding the TorchScript-compiled model for ``topology``.

        With ``atoms``, the force models those atoms only, and ``precision`` is that of
        :meth:`createModule` (``"single"`` makes the CPU platform faster). The
        module returns its own forces (:class:`~cgaa_openmm.torchforce.CGAAEnergyAndForces`), so
        that the grain embedding's memory is bounded by groups of grains, and TorchScript's
        optimising executor is switched off for the calling thread
        (:func:`~cgaa_openmm.torchforce.plain_executor`).

        The model is compiled once per precision (:meth:`compiledCore`, seconds) and shared by
        every force this potential makes; each force compiles only its small module around it.
        """
        import openmmtorch
        module = self._module(topology, grains, periodic, allowUnknownGrains, atoms, True, precision,
                              self.compiledCore)
        force = openmmtorch.TorchForce(torch.jit.script(module))
        plain_executor()
        force.setUsesPeriodicBoundaryConditions(module.periodic)
        force.setOutputsForces(True)
        force.setName("CGAA")
        return force

    def createSystem(self, topology, grains: GrainSpec = "residue", allowUnknownGrains: bool = False,
                     removeCMMotion: bool = True, precision: str = "auto", hydrogenMass=None,
                     positions=None, densityCorrection: Optional[str] = None) -> openmm.System:
        """A ``System`` with the topology's masses and box, and the CGAA force (``precision``:
        see :meth:`createModule`).

        Atoms of a grain are also joined by zero-strength bonds, so that OpenMM
        treats every grain as one molecule: a ``MonteCarloBarostat`` then moves
        grains whole instead of scaling their atoms apart.

        ``hydrogenMass`` (a mass ``Quantity``, or a number in daltons) repartitions mass as
        ``app.ForceField.createSystem`` does: every hydrogen gets that mass, taken from the heavy
        atom the topology bonds it to, so the total mass is unchanged (3-4 Da allows a 2 fs
        step, docs/simulate.md). A hydrogen without a bond in the topology is given the nearest
        heavy atom of its grain in ``positions`` (nm), which are used for nothing else
        (:mod:`cgaa_openmm.masses`).

        A model trained with a long-range tail (``long_range_tail`` > 0, :mod:`cgaa_openmm.model`)
        has it in its force: a periodic box of G grains and volume V gets -c G^2/V more energy.

        ``densityCorrection`` names an opt-in correction stored with the model
        (``metadata["density_corrections"]``; the shipped carbonate models have
        ``"dispersion-tail"``, GFN2-xTB's dispersion beyond their grain cutoff): it adds
        :meth:`createDensityCorrection`'s force. The default, None, is the model as trained.
        """
        topology = as_openmm_topology(topology)
        correction = self.createDensityCorrection(topology, densityCorrection, grains) if densityCorrection else None
        system = openmm.System()
        for atom in topology.atoms():
            system.addParticle(atom.element.mass if atom.element is not None else 0.0)
        box = topology.getPeriodicBoxVectors()
        if box is not None:
            system.setDefaultPeriodicBoxVectors(*box)
        system.addForce(self.createForce(topology, grains, None, allowUnknownGrains, precision=precision))
        system.addForce(self.createGrainBonds(topology, grains))
        if hydrogenMass is not None:
            partners = hydrogen_partners(topology, grain_groups(topology, grains), positions)
            repartition_hydrogen_mass(system, partners, hydrogenMass)
        if correction is not None:
            system.addForce(correction)
        if removeCMMotion:
            system.addForce(openmm.CMMotionRemover())
        return system

    def createDensityCorrection(self, topology, name: str, grains: GrainSpec = "residue"):
        """The model's density correction ``name`` for the periodic ``topology``, as an
        ``openmmtorch.TorchForce`` named ``CGAADensityCorrection``: E = -c G^2 / V over the
        topology's G grains (:mod:`cgaa_openmm.correction`). It depends on the box alone (no force
        on any atom), so it acts through a barostat. ``ValueError`` if the model has no such
        correction or the topology no box."""
        import openmmtorch
        correction = correction_of(self.metadata, name, "this model")
        topology = as_openmm_topology(topology)
        if topology.getPeriodicBoxVectors() is None:
            raise ValueError(f"density correction {name!r}: the topology has no periodic box, and the "
                             "correction is an energy of the box volume")
        module = TailEnergy(correction["tail_eV_A3"], len(grain_groups(topology, grains)), ANGSTROM_PER_NM,
                            KJ_PER_MOL_PER_EV)
        force = openmmtorch.TorchForce(torch.jit.script(module))
        force.setUsesPeriodicBoundaryConditions(True)
        force.setOutputsForces(True)
        force.setName("CGAADensityCorrection")
        return force

    def createMixedSystem(self, topology, system: openmm.System, residues=None, atoms=None,
                          grains: GrainSpec = "residue", interpolate: bool = False, removeConstraints: bool = True,
                          allowUnknownGrains: bool = False, precision: str = "auto") -> openmm.System:
        """A copy of the classical ``system`` of ``topology`` in which CGAA models one region.

        The region is ``residues`` (indices or ``Residue`` objects) or ``atoms``
        (indices). Classical terms among region atoms are removed: bonded terms
        whose atoms are all in it, nonbonded pairs of two region atoms, and (with
        ``removeConstraints``) constraints between them; region-environment
        interactions stay classical. The region's grains are joined by zero-energy
        bonds so that a ``MonteCarloBarostat`` keeps them whole. With
        ``interpolate``, the global parameter ``lambda_interpolate`` (default 1)
        gives E = E_rest + λ E_CGAA + (1 - λ) E_MM,region: λ = 0 is the original
        system, λ = 1 the mixed one. See :mod:`cgaa_openmm.mixed` for which forces
        are split. ``precision``: see :meth:`createModule`.
        """
        topology = as_openmm_topology(topology)
        if system.getNumParticles() != topology.getNumAtoms():
            raise ValueError(f"the system has {system.getNumParticles()} particles but the topology "
                             f"{topology.getNumAtoms()} atoms")
        region = region_atoms(topology, residues, atoms)
        force = self.createForce(topology, grains, system.usesPeriodicBoundaryConditions(), allowUnknownGrains,
                                 region, precision)
        return mixed_system(system, region, force, self.createGrainBonds(topology, grains, region), interpolate,
                            removeConstraints)

    def createGrainBonds(self, topology, grains: GrainSpec = "residue",
                         atoms: Optional[Iterable[int]] = None) -> openmm.HarmonicBondForce:
        """Zero-energy bonds joining the atoms of each grain (of ``atoms``, default all), and
        grains that the topology bonds to each other (e.g. the residues of a peptide).

        They add no energy; they make OpenMM count every grain as part of one molecule
        with the grains it is covalently bonded to, as the classical system did, so that
        a ``MonteCarloBarostat`` moves grains and molecules whole and trajectory
        reporters wrap whole molecules into the box.
        """
        topology = as_openmm_topology(topology)
        groups = selected_grain_groups(topology, grains, atom_selection(topology, atoms))
        owner = {atom: k for k, group in enumerate(groups) for atom in group}
        links = [(a.index, b.index) for a, b in topology.bonds()
                 if a.index in owner and b.index in owner and owner[a.index] != owner[b.index]]
        return _grain_bonds(groups, links)


def _grain_bonds(groups: List[List[int]], links: List[Tuple[int, int]]) -> openmm.HarmonicBondForce:
    """Zero-energy bonds from each grain's first atom to its others, and one per link (i, j)
    between grains (molecule definition only)."""
    bonds = openmm.HarmonicBondForce()
    bonds.setName("CGAAGrainBonds")
    for group in groups:
        for atom in group[1:]:
            bonds.addBond(group[0], atom, 0.0, 0.0)
    for i, j in links:
        bonds.addBond(i, j, 0.0, 0.0)
    return bonds
