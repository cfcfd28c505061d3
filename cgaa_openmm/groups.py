"""The model applied to one system's grains, and its gradient computed group by group.

A *group* is a run of consecutive grains of at most ``group_atoms`` atoms (a grain larger than
that is a group of its own). A grain's embedding depends on its own atoms only
(:meth:`~cgaa_openmm.model.CGAAModel.embed`), so the grains can be embedded one group at a time:
:meth:`GrainGroups.energy_and_gradient` keeps the per-pair tensors of one group alive at a time,
and the memory of an evaluation stays flat in the number of grains. Lengths in Å, energies in eV.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch

from .graph import GrainGraph, build_graph, grain_centres, intra_pairs
from .model import CGAAModel


class GrainTopology(NamedTuple):
    """One system's atoms and grains as :class:`GrainGroups` and
    :class:`~cgaa_openmm.torchforce.CGAACore` take them: an argument, not part of the compiled
    model, so that one compiled model serves every topology. Made by :func:`grain_topology`.

    ``group_*`` hold every group's atoms (grain order) and intra-grain pairs (numbered within the
    group), concatenated group after group, with the offsets of each group.
    """
    species: torch.Tensor              #: (n,) indices into the model's elements
    grain: torch.Tensor                #: (n,) grain index of every atom
    atoms: torch.Tensor                #: (n,) indices of the modelled atoms among the positions given
    intra_src: torch.Tensor            #: (P,) ordered pairs of distinct atoms of one grain
    intra_dst: torch.Tensor
    group_atoms: torch.Tensor
    group_atom_offsets: torch.Tensor
    group_grain_offsets: torch.Tensor
    group_pair_offsets: torch.Tensor
    group_src: torch.Tensor
    group_dst: torch.Tensor
    n_grains: int
    n_groups: int
    periodic: bool                     #: whether box vectors come with the positions
    select: bool                       #: whether ``atoms`` is a subset of the positions given
    grain_names: List[str]             #: a name for every grain, for error messages


def grain_topology(species: torch.Tensor, grain: torch.Tensor, periodic: bool, group_atoms: int = 1024,
                   atoms: Optional[torch.Tensor] = None, grain_names: Optional[List[str]] = None) -> GrainTopology:
    """The :class:`GrainTopology` of atoms with ``species`` and ``grain``, their grains in groups
    of at most ``group_atoms`` atoms (a grain larger than that is a group of its own). ``atoms``:
    their indices among the positions a module receives (default: all, in order)."""
    if group_atoms < 1:
        raise ValueError(f"group_atoms must be positive, not {group_atoms}")
    species, grain = species.long(), grain.long()
    n_grains = int(grain.max()) + 1
    select = atoms is not None
    atoms = torch.arange(grain.shape[0]) if atoms is None else atoms.long()
    if atoms.shape != grain.shape:
        raise ValueError("atoms must give one index per atom of species and grain")
    if grain_names is None:
        grain_names = ["grain " + str(g) for g in range(n_grains)]
    if len(grain_names) != n_grains:
        raise ValueError(f"grain_names must name all {n_grains} grains, not {len(grain_names)}")
    src, dst = intra_pairs(grain, n_grains)
    counts = torch.bincount(grain, minlength=n_grains).tolist()
    grain_offsets, atom_offsets, size = [0], [0], 0
    for g, count in enumerate(counts):
        if size > 0 and size + count > group_atoms:
            grain_offsets.append(g)
            atom_offsets.append(atom_offsets[-1] + size)
            size = 0
        size += count
    grain_offsets.append(n_grains)
    atom_offsets.append(atom_offsets[-1] + size)
    n_groups = len(grain_offsets) - 1
    group_of_grain = torch.zeros(n_grains, dtype=torch.long)
    for k in range(n_groups):
        group_of_grain[grain_offsets[k]:grain_offsets[k + 1]] = k
    order = torch.argsort(grain, stable=True)
    local = torch.empty_like(order)
    starts = torch.tensor(atom_offsets[:-1])[group_of_grain[grain[order]]]
    local[order] = torch.arange(order.shape[0]) - starts
    pair_group = group_of_grain[grain[src]]
    by_group = torch.argsort(pair_group, stable=True)
    pair_counts = torch.bincount(pair_group, minlength=n_groups)
    return GrainTopology(species, grain, atoms, src, dst, order, torch.tensor(atom_offsets),
                         torch.tensor(grain_offsets),
                         torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(pair_counts, 0)]),
                         local[src[by_group]], local[dst[by_group]], n_grains, n_groups, bool(periodic), select,
                         list(grain_names))


class GrainGroups(torch.nn.Module):
    """A :class:`~cgaa_openmm.model.CGAAModel` applied to a system given as a
    :class:`GrainTopology`: its graph, energy, and gradient computed group by group.

    Args:
        model: a trained model.
    """

    def __init__(self, model: CGAAModel):
        super().__init__()
        self.model = model

    def graph(self, r: torch.Tensor, cell: torch.Tensor, topology: GrainTopology, periodic: bool) -> GrainGraph:
        """The :class:`~cgaa_openmm.graph.GrainGraph` of positions ``r`` (Å) in ``cell`` (Å, rows
        a, b, c; ignored unless ``periodic``), with the model's cutoffs."""
        return build_graph(r, topology.grain, topology.n_grains, topology.intra_src, topology.intra_dst, cell,
                           periodic, self.model.grain_cutoff, self.model.atom_pair_cutoff)

    def energy(self, r: torch.Tensor, graph: GrainGraph, topology: GrainTopology) -> torch.Tensor:
        """Total energy (eV, float64) of positions ``r`` (Å) with their graph (:meth:`graph`)."""
        return self.model(r, topology.species, topology.grain, graph).sum()

    def embed_group(self, k: int, r: torch.Tensor, topology: GrainTopology) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`CGAAModel.embed` of group ``k``, from the unwrapped positions ``r`` (Å) of that
        group's atoms (in ``group_atoms`` order)."""
        atoms, g0, g1 = group(topology, k)
        p0, p1 = int(topology.group_pair_offsets[k]), int(topology.group_pair_offsets[k + 1])
        grain = topology.grain[atoms] - g0
        return self.model.embed(r, grain_centres(r, grain, g1 - g0), topology.species[atoms], grain,
                                topology.group_src[p0:p1], topology.group_dst[p0:p1])

    def energy_and_gradient(self, r: torch.Tensor, graph: GrainGraph, topology: GrainTopology,
                            single_group: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy (eV, float64) and its gradient dE/dr (eV/Å, shape of ``r``).

        The gradient is that of :meth:`energy`, but the grain embedding is done one group at a
        time, twice: once without autograd for the grain features, and once per group, after the
        grain-level part, to push that group's share of the gradient back to its atoms. One more
        forward pass of the embedding buys memory that does not grow with the number of groups.
        One group (``single_group``, which must say whether ``topology`` has one): plain autograd.
        """
        r = r.detach().requires_grad_(True)
        if single_group:
            energy = self.energy(r, graph, topology)
            return energy.detach(), _grad(energy, r)
        unwrapped = (r + graph.unwrap_shift).detach()
        parts: List[torch.Tensor] = []
        readouts: List[torch.Tensor] = []
        with torch.no_grad():
            for k in range(topology.n_groups):
                features, readout = self.embed_group(k, unwrapped[group(topology, k)[0]], topology)
                parts.append(features)
                readouts.append(readout)
        features = torch.cat(parts).requires_grad_(True)
        atom_energy = torch.cat(readouts).requires_grad_(True)
        centres = grain_centres(r + graph.unwrap_shift, topology.grain, topology.n_grains)
        energy = self.model.grain_energies(features, atom_energy, centres, r, topology.species, topology.grain,
                                           graph).sum()
        grads = torch.autograd.grad([energy], [r, features, atom_energy])
        gradient, d_features, d_readout = _some(grads[0], r), _some(grads[1], features), _some(grads[2], atom_energy)
        for k in range(topology.n_groups):
            atoms, g0, g1 = group(topology, k)
            part = unwrapped[atoms].requires_grad_(True)
            group_features, group_readout = self.embed_group(k, part, topology)
            share = (group_features * d_features[g0:g1]).sum() + (group_readout * d_readout[g0:g1]).sum()
            gradient = gradient.index_add(0, atoms, _grad(share, part))
        return energy.detach(), gradient


def group(topology: GrainTopology, k: int) -> Tuple[torch.Tensor, int, int]:
    """Atoms (in ``group_atoms`` order) and grain range [g0, g1) of group ``k``."""
    atoms = topology.group_atoms[int(topology.group_atom_offsets[k]):int(topology.group_atom_offsets[k + 1])]
    return atoms, int(topology.group_grain_offsets[k]), int(topology.group_grain_offsets[k + 1])


def _some(gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A gradient, or zeros where autograd found none."""
    return torch.zeros_like(like) if gradient is None else gradient


def _grad(output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """d output / d input for a scalar output (zeros if it does not depend on input)."""
    return _some(torch.autograd.grad([output], [input], allow_unused=True)[0], input)
