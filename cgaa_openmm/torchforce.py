"""The OpenMM boundary: the TorchScript modules inside a ``TorchForce``.

``CGAAEnergy`` takes positions (and box vectors) in OpenMM's units and returns the total energy
(of all atoms, or of a selected subset: the ML region of a mixed ML/MM system), so it can be
wrapped by ``openmmtorch.TorchForce`` (after ``torch.jit.script``), ``PythonTorchForce`` or
``openmm.PythonForce`` unchanged. Inputs are multiplied by ``length_scale`` to get Å and the
energy in eV by ``energy_scale``: for OpenMM, nm -> Å is 10 and eV -> kJ/mol is 96.485...
Every evaluation checks its input first. ``CGAAEnergyAndForces`` returns forces as well, from
the gradient computed group by group of grains (:mod:`cgaa_openmm.groups`): the TorchForce uses
it, so the memory of an evaluation does not grow with the per-pair tensors of every grain at once.

Both hold the system (its :class:`~cgaa_openmm.groups.GrainTopology`) as buffers around a
:class:`CGAACore`, which holds the model and nothing of the system: the core is compiled once per
model and precision and shared by every force made from it.
"""
from typing import Dict, List, Optional, Tuple

import torch

from .graph import GrainGraph, grain_faults
from .groups import GrainGroups, GrainTopology, grain_topology
from .model import CGAAModel
from .neighbors import check_box


class CGAACore(torch.nn.Module):
    """A model with its unit scales and run-time checks, for any system: the system comes with
    every call as a :class:`~cgaa_openmm.groups.GrainTopology`. It holds nothing of a topology,
    so :meth:`~cgaa_openmm.CGAAPotential.createForce` compiles it once per loaded model and
    precision, and each force adds only its small :class:`CGAAEnergyAndForces` around it.

    Args:
        model: a trained :class:`CGAAModel`.
        length_scale: Å per input length unit (10 for nm).
        energy_scale: output energy unit per eV (96.485... for kJ/mol).
        periodic, select, single_group: the kind of system it runs (:func:`core_kind`): with box
            vectors or not, a region of the positions or all of them, one group of grains or
            several. Constants, so that compiling folds away the branches of the other kinds.

    Every evaluation checks its configuration and raises, rather than return a wrong energy,
    when a coordinate is NaN, the box is too small (:func:`~cgaa_openmm.neighbors.check_box`),
    or a grain is not what the model knows (:func:`~cgaa_openmm.graph.grain_faults`): an atom
    farther from its grain centre than :meth:`CGAAModel.max_grain_radius`, or a grain that
    could not be made whole across the periodic boundary.
    """

    def __init__(self, model: CGAAModel, length_scale: float = 1.0, energy_scale: float = 1.0,
                 periodic: bool = False, select: bool = False, single_group: bool = True):
        super().__init__()
        self.periodic, self.select, self.single_group = bool(periodic), bool(select), bool(single_group)
        self.grains = GrainGroups(model)
        self.length_scale = float(length_scale)
        self.energy_scale = float(energy_scale)
        self.cutoff = float(model.grain_cutoff)
        self.max_radius = float(model.max_grain_radius())
        # c G^2 / V in output energy units for V in input length units^3 (c: CGAAModel.long_range_tail)
        self.tail = float(model.long_range_tail) * self.energy_scale / self.length_scale ** 3

    def tail_energy(self, boxvectors: Optional[torch.Tensor], topology: GrainTopology) -> torch.Tensor:
        """The model's long-range tail, -c G^2/V (output energy units, float64; zero without a box):
        it depends on the box alone, so it adds no force on any atom."""
        if not self.periodic or boxvectors is None or self.tail == 0.0:
            return torch.zeros((), dtype=torch.float64)
        volume = torch.linalg.det(boxvectors.to(torch.float64)).abs()
        return -self.tail * float(topology.n_grains) ** 2 / volume

    def prepare(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
                topology: GrainTopology) -> Tuple[torch.Tensor, GrainGraph]:
        """Checked positions in Å (n, 3, the model's dtype) and their graph
        (:func:`~cgaa_openmm.graph.build_graph`, the builder training uses too)."""
        if self.select:
            positions = positions.index_select(0, topology.atoms)
        r = positions.to(self.grains.model.atomic_energies.dtype) * self.length_scale
        if bool(torch.isnan(r).any()):
            raise ValueError("CGAA: a coordinate is NaN (atom "
                             + str(int(topology.atoms[torch.isnan(r).any(1).nonzero()[0, 0]])) + ")")
        if self.periodic:
            if boxvectors is None:
                raise ValueError("CGAA: this periodic model needs box vectors")
            cell = boxvectors.to(r.dtype) * self.length_scale
            check_box(cell, self.cutoff)
        else:
            cell = torch.zeros(3, 3, dtype=r.dtype, device=r.device)
        graph = self.grains.graph(r, cell, topology, self.periodic)
        self.check_grains(r, graph.unwrap_shift, cell, topology)
        return r, graph

    def check_grains(self, r: torch.Tensor, shift: torch.Tensor, cell: torch.Tensor, topology: GrainTopology) -> None:
        """Raise, naming the grain, if :func:`~cgaa_openmm.graph.grain_faults` finds a fault."""
        radius, broken = grain_faults(r, shift, topology.grain, topology.n_grains, topology.intra_src,
                                      topology.intra_dst, cell, self.periodic)
        far = (radius > self.max_radius).nonzero()
        if far.shape[0] > 0:
            atom = int(far[0, 0])
            raise ValueError(
                "CGAA: atom " + str(int(topology.atoms[atom])) + " is "
                + str(float(int(float(radius[atom]) * 1000.0)) / 1000.0) + " Å from the centre of its grain ("
                + topology.grain_names[int(topology.grain[atom])]
                + "), beyond the " + str(self.max_radius) + " Å this model allows (the largest grain radius "
                + "of its training data plus a margin). The grain is not the molecule or residue the model "
                + "was trained on (check the topology's residues and the positions), or it is wrapped "
                + "across the periodic box in a way that cannot be undone: use a box at least twice the "
                + "grain's length, or keep molecules whole in the coordinates you give.")
        if broken.shape[0] > 0:
            a, b = int(broken[0, 0]), int(broken[0, 1])
            raise ValueError(
                "CGAA: the grain " + topology.grain_names[int(topology.grain[a])] + " could not be made whole "
                + "across the periodic box: atoms " + str(int(topology.atoms[a])) + " and "
                + str(int(topology.atoms[b])) + " are neighbours but end up a box vector apart. Use a box at "
                + "least twice the grain's length across, or keep molecules whole in the coordinates you give.")

    def energy(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
               topology: GrainTopology) -> torch.Tensor:
        """Total energy (``energy_scale`` units, float64) of positions (N, 3) and box (3, 3, rows a, b, c)."""
        r, graph = self.prepare(positions, boxvectors, topology)
        return self.grains.energy(r, graph, topology) * self.energy_scale + self.tail_energy(boxvectors, topology)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
                topology: GrainTopology) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy and forces (``energy_scale`` per input length unit; shape of ``positions``):
        -dE/dpositions, as from differentiating :meth:`energy`, with the grain embedding done
        group by group (:meth:`~cgaa_openmm.groups.GrainGroups.energy_and_gradient`)."""
        r, graph = self.prepare(positions.detach(), boxvectors, topology)
        energy, gradient = self.grains.energy_and_gradient(r, graph, topology, self.single_group)
        forces = -gradient * (self.energy_scale * self.length_scale)
        if self.select:
            forces = torch.zeros(positions.shape, dtype=forces.dtype, device=forces.device).index_add(
                0, topology.atoms, forces)
        return energy * self.energy_scale + self.tail_energy(boxvectors, topology), forces.to(positions.dtype)


class CGAAEnergy(torch.nn.Module):
    """Energy of one system of atoms grouped into grains: a :class:`CGAACore` and the system's
    :class:`~cgaa_openmm.groups.GrainTopology`, held as buffers.

    Args:
        model: a trained :class:`CGAAModel`, or a :class:`CGAACore` (eager or compiled) to share.
        species: (N,) indices into ``model.elements``.
        grain: (N,) grain index of every atom.
        periodic: whether ``forward`` receives box vectors.
        length_scale: Å per input length unit (10 for nm); with a core, the core's.
        energy_scale: output energy unit per eV (96.485... for kJ/mol); with a core, the core's.
        atoms: (n,) indices of the atoms this module models, for a ``forward`` that
            receives the positions of every atom of a larger system (the others get zero
            force); ``species`` and ``grain`` then index these n atoms. Default: all atoms.
        group_atoms: most atoms per group of grains that :meth:`energy_and_forces` embeds at
            once (:func:`~cgaa_openmm.groups.grain_topology`).
        grain_names: a name for every grain (e.g. ``"residue EMC 17"``), for error messages.
        double: a second model or core that runs the positions that come in float64, ``model``
            running the others. OpenMM hands a ``TorchForce`` float64 positions on the Reference
            and CPU platforms (openmm-torch runs its Reference kernel for both) and on OpenCL/CUDA
            with ``Precision=double``, float32 ones otherwise. Default: ``model`` runs all.
    """

    def __init__(self, model, species: torch.Tensor, grain: torch.Tensor, periodic: bool,
                 length_scale: float = 1.0, energy_scale: float = 1.0, atoms: Optional[torch.Tensor] = None,
                 group_atoms: int = 1024, grain_names: Optional[List[str]] = None, double=None):
        super().__init__()
        topology = grain_topology(species, grain, periodic, group_atoms, atoms, grain_names)
        kind = core_kind(topology)
        self.core = _core(model, length_scale, energy_scale, kind)
        self.core64 = self.core if double is None else _core(double, length_scale, energy_scale, kind)
        for name in TOPOLOGY_TENSORS:
            self.register_buffer(name, getattr(topology, name))
        self.n_grains, self.n_groups = topology.n_grains, topology.n_groups
        self.periodic, self.select = topology.periodic, topology.select
        self.grain_names: List[str] = topology.grain_names

    def topology(self) -> GrainTopology:
        """The system, as the core takes it."""
        return GrainTopology(self.species, self.grain, self.atoms, self.intra_src, self.intra_dst, self.group_atoms,
                             self.group_atom_offsets, self.group_grain_offsets, self.group_pair_offsets,
                             self.group_src, self.group_dst, self.n_grains, self.n_groups, self.periodic, self.select,
                             self.grain_names)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Total energy (``energy_scale`` units, float64) of positions (N, 3) and box (3, 3, rows a, b, c)."""
        if positions.dtype == torch.float64:
            return self.core64.energy(positions, boxvectors, self.topology())
        return self.core.energy(positions, boxvectors, self.topology())

    def energy_and_forces(self, positions: torch.Tensor,
                          boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy and forces (:meth:`CGAACore.forward`)."""
        if positions.dtype == torch.float64:
            return self.core64(positions, boxvectors, self.topology())
        return self.core(positions, boxvectors, self.topology())


def core_kind(topology: GrainTopology) -> Dict[str, bool]:
    """The :class:`CGAACore` arguments that a system needs: ``periodic``, ``select``, ``single_group``."""
    return dict(periodic=topology.periodic, select=topology.select, single_group=topology.n_groups == 1)


def _core(model, length_scale: float, energy_scale: float, kind: Dict[str, bool]) -> torch.nn.Module:
    """A :class:`CGAACore` of ``model`` for systems of ``kind``, or ``model`` itself if it is a
    core already (eager or compiled, made for that kind)."""
    return CGAACore(model, length_scale, energy_scale, **kind) if isinstance(model, CGAAModel) else model


#: The tensors of a :class:`~cgaa_openmm.groups.GrainTopology`, buffers of :class:`CGAAEnergy`.
TOPOLOGY_TENSORS = ("species", "grain", "atoms", "intra_src", "intra_dst", "group_atoms", "group_atom_offsets",
                    "group_grain_offsets", "group_pair_offsets", "group_src", "group_dst")


def plain_executor() -> None:
    """Switch off TorchScript's optimising graph executor for the calling thread.

    Its autodiff subgraphs keep the intermediates of every group of grains of
    :meth:`CGAACore.forward` alive: in an OpenMM ``Context`` (fast model, 9,600 atoms, one
    thread) an evaluation took 1.5 GB above the loaded process with it and 0.1 GB without, at
    the same speed. ``TorchForce`` runs the model in the thread that calls OpenMM, so
    :meth:`~cgaa_openmm.CGAAPotential.createForce` calls this there (LAMMPS' MLIP plugins make
    the same setting). It applies to every TorchScript model run in the thread. ``TorchForce``
    clones its module, and a clone run this way finds only each module's ``forward`` and the
    methods that ``forward`` calls directly; the core is therefore frozen (:func:`compiled_core`),
    which inlines every call into its ``forward``.
    """
    torch._C._set_graph_executor_optimize(False)


def compiled_core(core: CGAACore) -> torch.jit.ScriptModule:
    """``core`` compiled to TorchScript (``e3nn.util.jit.script``) and frozen: every method call
    is inlined into ``forward``. This is the costly step of making a force (seconds, and memory
    TorchScript never frees), done once per loaded model and precision
    (:meth:`~cgaa_openmm.CGAAPotential.createForce`). The freezing runs with the optimising
    executor on: with it off (:func:`plain_executor`) calls are not inlined, and the clone
    ``TorchForce`` makes would miss methods.

    The weights stay attributes rather than becoming constants of the code (buffers are made
    parameters, without gradient, and freezing preserves parameters), so that the module moves
    with ``.to(device)``: openmm-torch loads a module on the CPU and moves it to the GPU of a
    CUDA context, and a frozen constant would stay behind (:func:`tensor_constants`).
    ``core`` is left as it was."""
    from e3nn.util.jit import script
    buffers = [(module, name, buffer, name not in module._non_persistent_buffers_set)
               for module in core.modules()
               if not isinstance(module, torch.jit.ScriptModule)   # e3nn's compiled parts: unused masks
               for name, buffer in module._buffers.items() if buffer is not None]
    try:
        for module, name, buffer, _ in buffers:
            del module._buffers[name]
            module.register_parameter(name, torch.nn.Parameter(buffer, requires_grad=False))
        scripted = script(core.eval())
    finally:
        for module, name, buffer, persistent in buffers:
            del module._parameters[name]
            module.register_buffer(name, buffer, persistent=persistent)
    with torch.jit.optimized_execution(True):
        frozen = torch._C._freeze_module(scripted._c, [], True, True)
    # a plain wrapper, which (unlike freeze's own) can be a submodule of a module scripted later.
    return torch.jit._recursive.wrap_cpp_module(frozen)


def tensor_constants(module: torch.jit.ScriptModule) -> List[Tuple[int, ...]]:
    """Shapes of the tensors held as constants of the code of ``module``'s and its submodules'
    ``forward``, which ``module.to(device)`` does not move (scalars excepted: they combine with
    tensors on any device)."""
    shapes = []
    for sub in module.modules():
        if not sub._c._has_method("forward"):
            continue
        for node in sub.forward.graph.findAllNodes("prim::Constant"):
            value = node.output().toIValue() if node.output().type().kind() == "TensorType" else None
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                shapes.append(tuple(value.shape))
    return shapes


class CGAAEnergyAndForces(CGAAEnergy):
    """A :class:`CGAAEnergy` whose ``forward`` returns (energy, forces)
    (:meth:`~CGAAEnergy.energy_and_forces`), for ``TorchForce.setOutputsForces(True)``."""

    def forward(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        topology = self.topology()           # methods called from forward itself: TorchForce's clone has them
        if positions.dtype == torch.float64:
            return self.core64(positions, boxvectors, topology)
        return self.core(positions, boxvectors, topology)
