"""The model bound to one topology: the TorchScript module inside the TorchForce.

``CGAAForceModule`` is a plain ``torch.nn.Module`` taking positions (and box
vectors) and returning the total energy (of all atoms, or of a selected subset:
the ML region of a mixed ML/MM system), so it can be wrapped by
``openmmtorch.TorchForce`` (after ``torch.jit.script``), ``PythonTorchForce``
or ``openmm.PythonForce`` unchanged. Inputs are multiplied by
``length_scale`` to get Å and the energy in eV by ``energy_scale``: for OpenMM,
nm -> Å is 10 and eV -> kJ/mol is 96.485...

``EnergyAndForces`` returns forces as well, computed group by group of
grains (:meth:`CGAAForceModule.energy_and_forces`): the TorchForce uses it, so the
memory of an evaluation does not grow with the per-pair tensors of every grain at once.
"""
from typing import Dict, List, Optional, Tuple

import torch

from .graph import build_graph, grain_centres, grain_faults, intra_pairs
from .model import CGAAModel
from .neighbors import check_box


class CGAAForceModule(torch.nn.Module):
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
        chunk_atoms: most atoms per group of grains that :meth:`energy_and_forces` embeds at
            once (a grain larger than this is a group of its own).
        grain_names: a name for every grain (e.g. ``"residue EMC 17"``), for error messages.

    Every evaluation checks its configuration and raises, rather than return a wrong energy,
    when a coordinate is NaN, the box is too small (:func:`~cgaa_openmm.neighbors.check_box`),
    or a grain is not what the model knows (:func:`~cgaa_openmm.graph.grain_faults`): an atom
    farther from its grain centre than :meth:`CGAAModel.max_grain_radius`, or a grain that
    could not be made whole across the periodic boundary.
    """

    def __init__(self, model: CGAAModel, species: torch.Tensor, grain: torch.Tensor, periodic: bool,
                 length_scale: float = 1.0, energy_scale: float = 1.0, atoms: Optional[torch.Tensor] = None,
                 chunk_atoms: int = 1024, grain_names: Optional[List[str]] = None):
        super().__init__()
        self.model = model
        self.n_grains = int(grain.max()) + 1
        self.periodic = bool(periodic)
        self.length_scale = float(length_scale)
        self.energy_scale = float(energy_scale)
        self.cutoff = float(model.grain_cutoff)
        self.pair_cutoff = float(model.atom_pair_cutoff)
        self.max_radius = float(model.max_grain_radius())
        self.select = atoms is not None
        if atoms is None:
            atoms = torch.arange(grain.shape[0])
        if atoms.shape != grain.shape:
            raise ValueError("atoms must give one index per atom of species and grain")
        self.register_buffer("atoms", atoms.long())
        self.register_buffer("species", species.long())
        self.register_buffer("grain", grain.long())
        if grain_names is None:
            grain_names = ["grain " + str(g) for g in range(self.n_grains)]
        if len(grain_names) != self.n_grains:
            raise ValueError(f"grain_names must name all {self.n_grains} grains, not {len(grain_names)}")
        self.grain_names: List[str] = list(grain_names)
        src, dst = intra_pairs(self.grain, self.n_grains)
        self.register_buffer("intra_src", src)
        self.register_buffer("intra_dst", dst)
        self._build_chunks(int(chunk_atoms))

    def _build_chunks(self, chunk_atoms: int) -> None:
        """Groups of consecutive grains of at most ``chunk_atoms`` atoms, with their atoms and
        intra-grain pairs (numbered within the group), concatenated group after group."""
        if chunk_atoms < 1:
            raise ValueError(f"chunk_atoms must be positive, not {chunk_atoms}")
        counts = torch.bincount(self.grain, minlength=self.n_grains).tolist()
        grain_offsets, atom_offsets, size = [0], [0], 0
        for g, count in enumerate(counts):
            if size > 0 and size + count > chunk_atoms:
                grain_offsets.append(g)
                atom_offsets.append(atom_offsets[-1] + size)
                size = 0
            size += count
        grain_offsets.append(self.n_grains)
        atom_offsets.append(atom_offsets[-1] + size)
        chunk_of_grain = torch.zeros(self.n_grains, dtype=torch.long)
        for k in range(len(grain_offsets) - 1):
            chunk_of_grain[grain_offsets[k]:grain_offsets[k + 1]] = k
        order = torch.argsort(self.grain, stable=True)
        local = torch.empty_like(order)
        starts = torch.tensor(atom_offsets[:-1])[chunk_of_grain[self.grain[order]]]
        local[order] = torch.arange(order.shape[0]) - starts
        pair_chunk = chunk_of_grain[self.grain[self.intra_src]]
        by_chunk = torch.argsort(pair_chunk, stable=True)
        pair_counts = torch.bincount(pair_chunk, minlength=len(grain_offsets) - 1)
        self.n_chunks = len(grain_offsets) - 1
        self.register_buffer("chunk_atoms", order)
        self.register_buffer("chunk_atom_offsets", torch.tensor(atom_offsets))
        self.register_buffer("chunk_grain_offsets", torch.tensor(grain_offsets))
        self.register_buffer("chunk_pair_offsets", torch.cat([torch.zeros(1, dtype=torch.long),
                                                              torch.cumsum(pair_counts, 0)]))
        self.register_buffer("chunk_src", local[self.intra_src[by_chunk]])
        self.register_buffer("chunk_dst", local[self.intra_dst[by_chunk]])

    def prepare(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Checked positions in Å (N, 3, the model's dtype) and their graph
        (:func:`~cgaa_openmm.graph.build_graph`, the builder training uses too)."""
        if self.select:
            positions = positions.index_select(0, self.atoms)
        r = positions.to(self.model.atomic_energies.dtype) * self.length_scale
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
        graph = build_graph(r, self.grain, self.n_grains, self.intra_src, self.intra_dst, cell, self.periodic,
                            self.cutoff, self.pair_cutoff)
        self.check_grains(r, graph["unwrap_shift"], cell)
        return r, graph

    def check_grains(self, r: torch.Tensor, shift: torch.Tensor, cell: torch.Tensor) -> None:
        """Raise, naming the grain, if :func:`~cgaa_openmm.graph.grain_faults` finds a fault."""
        radius, broken = grain_faults(r, shift, self.grain, self.n_grains, self.intra_src, self.intra_dst, cell,
                                      self.periodic)
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
        return self.total_energy(r, graph) * self.energy_scale

    def total_energy(self, r: torch.Tensor, graph: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Energy (eV, float64) of positions ``r`` (Å) with their graph from :meth:`prepare`."""
        return self.model(r, self.species, self.grain, self.n_grains, graph["unwrap_shift"], self.intra_src,
                          self.intra_dst, graph["edge_src"], graph["edge_dst"], graph["edge_shift"],
                          graph["pair_i"], graph["pair_j"], graph["pair_shift"]).sum()

    def group(self, k: int) -> Tuple[torch.Tensor, int, int]:
        """Atoms (in ``chunk_atoms`` order) and grain range [g0, g1) of group ``k`` of grains."""
        atoms = self.chunk_atoms[int(self.chunk_atom_offsets[k]):int(self.chunk_atom_offsets[k + 1])]
        return atoms, int(self.chunk_grain_offsets[k]), int(self.chunk_grain_offsets[k + 1])

    def embed_group(self, k: int, r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`CGAAModel.embed` of group ``k`` of grains, from the unwrapped positions ``r``
        of that group's atoms (in ``chunk_atoms`` order)."""
        atoms, g0, g1 = self.group(k)
        p0, p1 = int(self.chunk_pair_offsets[k]), int(self.chunk_pair_offsets[k + 1])
        grain = self.grain[atoms] - g0
        return self.model.embed(r, grain_centres(r, grain, g1 - g0), self.species[atoms], grain,
                                self.chunk_src[p0:p1], self.chunk_dst[p0:p1])

    def energy_and_forces(self, positions: torch.Tensor,
                          boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy and forces (``energy_scale`` per input length unit; shape of ``positions``).

        The forces are -dE/dpositions, as from differentiating :meth:`forward`, but with the
        grain embedding done one group of grains at a time (``chunk_atoms``), twice: once
        without autograd for the grain features, and once per group, after the grain-level
        part, to push that group's share of the gradient back to its atoms. The per-pair
        tensors of one group are alive at a time, so memory stays flat in the number of
        grains, for one more forward pass of the embedding. One group: plain autograd.
        """
        r, graph = self.prepare(positions.detach(), boxvectors)
        r = r.detach().requires_grad_(True)
        if self.n_chunks == 1:
            energy = self.total_energy(r, graph)
            gradient = _grad(energy, r)
        else:
            shift = graph["unwrap_shift"]
            unwrapped = (r + shift).detach()
            parts: List[torch.Tensor] = []
            readouts: List[torch.Tensor] = []
            with torch.no_grad():
                for k in range(self.n_chunks):
                    features, readout = self.embed_group(k, unwrapped[self.group(k)[0]])
                    parts.append(features)
                    readouts.append(readout)
            features = torch.cat(parts).requires_grad_(True)
            atom_energy = torch.cat(readouts).requires_grad_(True)
            centres = grain_centres(r + shift, self.grain, self.n_grains)
            energy = self.model.grain_energies(features, atom_energy, centres, r, self.species, self.grain,
                                               graph["edge_src"], graph["edge_dst"], graph["edge_shift"],
                                               graph["pair_i"], graph["pair_j"], graph["pair_shift"]).sum()
            grads = torch.autograd.grad([energy], [r, features, atom_energy])
            gradient, d_features, d_readout = _some(grads[0], r), _some(grads[1], features), _some(grads[2], atom_energy)
            for k in range(self.n_chunks):
                atoms, g0, g1 = self.group(k)
                group = unwrapped[atoms].requires_grad_(True)
                chunk_features, chunk_readout = self.embed_group(k, group)
                share = (chunk_features * d_features[g0:g1]).sum() + (chunk_readout * d_readout[g0:g1]).sum()
                gradient = gradient.index_add(0, atoms, _grad(share, group))
        forces = -gradient * (self.energy_scale * self.length_scale)
        if self.select:
            forces = torch.zeros(positions.shape, dtype=forces.dtype, device=forces.device).index_add(
                0, self.atoms, forces)
        return energy.detach() * self.energy_scale, forces.to(positions.dtype)


def _some(gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A gradient, or zeros where autograd found none."""
    return torch.zeros_like(like) if gradient is None else gradient


def _grad(output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """d output / d input for a scalar output (zeros if it does not depend on input)."""
    return _some(torch.autograd.grad([output], [input], allow_unused=True)[0], input)


def plain_executor() -> None:
    """Switch off TorchScript's optimising graph executor for the calling thread.

    Its autodiff subgraphs keep the intermediates of every group of grains of
    :meth:`CGAAForceModule.energy_and_forces` alive: in an OpenMM ``Context`` (fast model,
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


class EnergyAndForces(CGAAForceModule):
    """A :class:`CGAAForceModule` whose ``forward`` returns (energy, forces)
    (:meth:`~CGAAForceModule.energy_and_forces`), for ``TorchForce.setOutputsForces(True)``."""

    def forward(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.energy_and_forces(positions, boxvectors)


class ByPrecision(torch.nn.Module):
    """The same energy module in float32 and float64, run in the precision the positions come in.

    OpenMM hands a ``TorchForce`` float64 positions on the Reference and CPU platforms
    (openmm-torch runs its Reference kernel for both) and on OpenCL/CUDA with
    ``Precision=double``, float32 ones otherwise; the model then computes in that precision.
    The copies are ``in_single`` and ``in_double``; ``species``, ``grain``, ``atoms``, ``n_grains`` and
    ``periodic`` are those of both.
    """

    def __init__(self, single: CGAAForceModule, double: CGAAForceModule):
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


class EnergyAndForcesByPrecision(ByPrecision):
    """:class:`ByPrecision` of two :class:`EnergyAndForces`: returns (energy, forces)."""

    def forward(self, positions: torch.Tensor,
                boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if positions.dtype == torch.float64:
            return self.in_double.energy_and_forces(positions, boxvectors)
        return self.in_single.energy_and_forces(positions, boxvectors)
