"""The OpenMM boundary: the TorchScript modules inside a ``TorchForce``.

``CGAAEnergy`` takes positions (and box vectors) in OpenMM's units and returns the total energy
(of all atoms, or of a selected subset: the ML region of a mixed ML/MM system), so it can be
wrapped by ``openmmtorch.TorchForce`` (after ``torch.jit.script``), ``PythonTorchForce`` or
``openmm.PythonForce`` unchanged. Inputs are multiplied by ``length_scale`` to get Å and the
energy in eV by ``energy_scale``: for OpenMM, nm -> Å is 10 and eV -> kJ/mol is 96.485...
Every evaluation checks its input first. ``CGAAEnergyAndForces`` returns forces as well, from
the gradient computed group by group of grains (:mod:`cgaa_openmm.groups`): the TorchForce uses
it, so the memory of an evaluation does not grow with the per-pair tensors of every grain at once.
"""
from typing import List, Optional, Tuple

import torch

from .graph import GrainGraph, grain_faults
from .groups import GrainGroups
from .model import CGAAModel
from .neighbors import check_box


class CGAAEnergy(torch.nn.Module):
    """Energy of one system of atoms grouped into grains.

    Args:
        model: a trained :class:`CGAAModel`.
        species: (N,) indices into ``model.elements``.
        grain: (N,) grain index of every atom.
        periodic: whether ``forward`` receives box vectors.
        length_scale: Å per input length unit (10 for nm).
        energy_scale: output energy unit per eV (96.485... for kJ/mol).
        atoms: (n,) indices of the atoms this module models, for a ``forward`` that
            receives the positions of every atom of a larger system (the others get zero
            force); ``species`` and ``grain`` then index these n atoms. Default: all atoms.
        group_atoms: most atoms per group of grains that :meth:`energy_and_forces` embeds at
            once (:class:`~cgaa_openmm.groups.GrainGroups`).
        grain_names: a name for every grain (e.g. ``"residue EMC 17"``), for error messages.

    Every evaluation checks its configuration and raises, rather than return a wrong energy,
    when a coordinate is NaN, the box is too small (:func:`~cgaa_openmm.neighbors.check_box`),
    or a grain is not what the model knows (:func:`~cgaa_openmm.graph.grain_faults`): an atom
    farther from its grain centre than :meth:`CGAAModel.max_grain_radius`, or a grain that
    could not be made whole across the periodic boundary.
    """

    def __init__(self, model: CGAAModel, species: torch.Tensor, grain: torch.Tensor, periodic: bool,
                 length_scale: float = 1.0, energy_scale: float = 1.0, atoms: Optional[torch.Tensor] = None,
                 group_atoms: int = 1024, grain_names: Optional[List[str]] = None):
        super().__init__()
        self.grains = GrainGroups(model, species, grain, group_atoms)
        self.n_grains = self.grains.n_grains
        self.periodic = bool(periodic)
        self.length_scale = float(length_scale)
        self.energy_scale = float(energy_scale)
        self.cutoff = float(model.grain_cutoff)
        self.max_radius = float(model.max_grain_radius())
        self.select = atoms is not None
        if atoms is None:
            atoms = torch.arange(grain.shape[0])
        if atoms.shape != grain.shape:
            raise ValueError("atoms must give one index per atom of species and grain")
        self.register_buffer("atoms", atoms.long())
        self.register_buffer("species", self.grains.species)
        self.register_buffer("grain", self.grains.grain)
        if grain_names is None:
            grain_names = ["grain " + str(g) for g in range(self.n_grains)]
        if len(grain_names) != self.n_grains:
            raise ValueError(f"grain_names must name all {self.n_grains} grains, not {len(grain_names)}")
        self.grain_names: List[str] = list(grain_names)

    def prepare(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor]) -> Tuple[torch.Tensor, GrainGraph]:
        """Checked positions in Å (N, 3, the model's dtype) and their graph
        (:func:`~cgaa_openmm.graph.build_graph`, the builder training uses too)."""
        if self.select:
            positions = positions.index_select(0, self.atoms)
        r = positions.to(self.grains.model.atomic_energies.dtype) * self.length_scale
        if bool(torch.isnan(r).any()):
            raise ValueError("CGAA: a coordinate is NaN (atom "
                             + str(int(self.atoms[torch.isnan(r).any(1).nonzero()[0, 0]])) + ")")
        if self.periodic:
            if boxvectors is None:
                raise ValueError("CGAA: this periodic model needs box vectors")
            cell = boxvectors.to(r.dtype) * self.length_scale
            check_box(cell, self.cutoff)
        else:
            cell = torch.zeros(3, 3, dtype=r.dtype, device=r.device)
        graph = self.grains.graph(r, cell, self.periodic)
        self.check_grains(r, graph.unwrap_shift, cell)
        return r, graph

    def check_grains(self, r: torch.Tensor, shift: torch.Tensor, cell: torch.Tensor) -> None:
        """Raise, naming the grain, if :func:`~cgaa_openmm.graph.grain_faults` finds a fault."""
        radius, broken = grain_faults(r, shift, self.grain, self.n_grains, self.grains.intra_src,
                                      self.grains.intra_dst, cell, self.periodic)
        far = (radius > self.max_radius).nonzero()
        if far.shape[0] > 0:
            atom = int(far[0, 0])
            raise ValueError(
                "CGAA: atom " + str(int(self.atoms[atom])) + " is " + str(float(int(float(radius[atom]) * 1000.0)) / 1000.0)
                + " Å from the centre of its grain (" + self.grain_names[int(self.grain[atom])]
                + "), beyond the " + str(self.max_radius) + " Å this model allows (the largest grain radius "
                + "of its training data plus a margin). The grain is not the molecule or residue the model "
                + "was trained on (check the topology's residues and the positions), or it is wrapped "
                + "across the periodic box in a way that cannot be undone: use a box at least twice the "
                + "grain's length, or keep molecules whole in the coordinates you give.")
        if broken.shape[0] > 0:
            a, b = int(broken[0, 0]), int(broken[0, 1])
            raise ValueError(
                "CGAA: the grain " + self.grain_names[int(self.grain[a])] + " could not be made whole across "
                + "the periodic box: atoms " + str(int(self.atoms[a])) + " and " + str(int(self.atoms[b]))
                + " are neighbours but end up a box vector apart. Use a box at least twice the grain's "
                + "length across, or keep molecules whole in the coordinates you give.")

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Total energy (``energy_scale`` units, float64) of positions (N, 3) and box (3, 3, rows a, b, c)."""
        r, graph = self.prepare(positions, boxvectors)
        return self.grains.energy(r, graph) * self.energy_scale

    def energy_and_forces(self, positions: torch.Tensor,
                          boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy and forces (``energy_scale`` per input length unit; shape of ``positions``):
        -dE/dpositions, as from differentiating :meth:`forward`, with the grain embedding done
        group by group (:meth:`~cgaa_openmm.groups.GrainGroups.energy_and_gradient`)."""
        r, graph = self.prepare(positions.detach(), boxvectors)
        energy, gradient = self.grains.energy_and_gradient(r, graph)
        forces = -gradient * (self.energy_scale * self.length_scale)
        if self.select:
            forces = torch.zeros(positions.shape, dtype=forces.dtype, device=forces.device).index_add(
                0, self.atoms, forces)
        return energy * self.energy_scale, forces.to(positions.dtype)


def plain_executor() -> None:
    """Switch off TorchScript's optimising graph executor for the calling thread.

    Its autodiff subgraphs keep the intermediates of every group of grains of
    :meth:`CGAAEnergy.energy_and_forces` alive: in an OpenMM ``Context`` (fast model,
    9,600 atoms, one thread) an evaluation took 1.5 GB above the loaded process with it and
    0.1 GB without, at the same speed. ``TorchForce`` runs the model in the thread that calls
    OpenMM, so :meth:`~cgaa_openmm.CGAAPotential.createForce` calls this there (LAMMPS' MLIP
    plugins make the same setting). It applies to every TorchScript model run in the thread.
    ``TorchForce`` clones its module, and a clone run this way finds only ``forward`` and the
    methods that ``forward`` calls directly; ``createForce`` therefore freezes the module
    first (``torch.jit.freeze``, which inlines every call), with the optimising executor on.
    """
    torch._C._set_graph_executor_optimize(False)


def frozen(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """``module`` compiled to TorchScript (``e3nn.util.jit.script``) and frozen
    (``torch.jit.freeze``: parameters become constants and every method call is inlined), as
    :meth:`~cgaa_openmm.CGAAPotential.createForce` hands it to ``TorchForce``. The freezing runs
    with the optimising executor on: with it off (:func:`plain_executor`) calls are not inlined,
    and the clone ``TorchForce`` makes would miss methods."""
    from e3nn.util.jit import script
    with torch.jit.optimized_execution(True):
        return torch.jit.freeze(script(module.eval()))


class CGAAEnergyAndForces(CGAAEnergy):
    """A :class:`CGAAEnergy` whose ``forward`` returns (energy, forces)
    (:meth:`~CGAAEnergy.energy_and_forces`), for ``TorchForce.setOutputsForces(True)``."""

    def forward(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.energy_and_forces(positions, boxvectors)


class EnergyByPrecision(torch.nn.Module):
    """The same energy module in float32 and float64, run in the precision the positions come in.

    OpenMM hands a ``TorchForce`` float64 positions on the Reference and CPU platforms
    (openmm-torch runs its Reference kernel for both) and on OpenCL/CUDA with
    ``Precision=double``, float32 ones otherwise; the model then computes in that precision.
    The copies are ``in_single`` and ``in_double``; ``species``, ``grain``, ``atoms``, ``n_grains`` and
    ``periodic`` are those of both.
    """

    def __init__(self, single: CGAAEnergy, double: CGAAEnergy):
        super().__init__()
        self.in_single = single
        self.in_double = double
        self.periodic = single.periodic
        self.n_grains = single.n_grains
        self.register_buffer("species", single.species)
        self.register_buffer("grain", single.grain)
        self.register_buffer("atoms", single.atoms)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        if positions.dtype == torch.float64:
            return self.in_double(positions, boxvectors)
        return self.in_single(positions, boxvectors)


class EnergyAndForcesByPrecision(EnergyByPrecision):
    """:class:`EnergyByPrecision` of two :class:`CGAAEnergyAndForces`: returns (energy, forces)."""

    def forward(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if positions.dtype == torch.float64:
            return self.in_double.energy_and_forces(positions, boxvectors)
        return self.in_single.energy_and_forces(positions, boxvectors)
