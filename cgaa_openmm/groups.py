"""The model bound to one system's grains, and its gradient computed group by group.

A *group* is a run of consecutive grains of at most ``group_atoms`` atoms (a grain larger than
that is a group of its own). A grain's embedding depends on its own atoms only
(:meth:`~cgaa_openmm.model.CGAAModel.embed`), so the grains can be embedded one group at a time:
:meth:`GrainGroups.energy_and_gradient` keeps the per-pair tensors of one group alive at a time,
and the memory of an evaluation stays flat in the number of grains. Lengths in Å, energies in eV.
"""
from typing import List, Optional, Tuple

import torch

from .graph import GrainGraph, build_graph, grain_centres, intra_pairs
from .model import CGAAModel


class GrainGroups(torch.nn.Module):
    """A :class:`~cgaa_openmm.model.CGAAModel` bound to one system: its atoms' species and grains,
    their intra-grain pairs, and the grains in groups of at most ``group_atoms`` atoms.

    Args:
        model: a trained model.
        species: (N,) indices into ``model.elements``.
        grain: (N,) grain index of every atom.
        group_atoms: most atoms per group of grains that :meth:`energy_and_gradient` embeds at once.
    """

    def __init__(self, model: CGAAModel, species: torch.Tensor, grain: torch.Tensor, group_atoms: int = 1024):
        super().__init__()
        if group_atoms < 1:
            raise ValueError(f"group_atoms must be positive, not {group_atoms}")
        self.model = model
        self.n_grains = int(grain.max()) + 1
        self.register_buffer("species", species.long())
        self.register_buffer("grain", grain.long())
        src, dst = intra_pairs(self.grain, self.n_grains)
        self.register_buffer("intra_src", src)
        self.register_buffer("intra_dst", dst)

        counts = torch.bincount(self.grain, minlength=self.n_grains).tolist()
        grain_offsets, atom_offsets, size = [0], [0], 0
        for g, count in enumerate(counts):
            if size > 0 and size + count > group_atoms:
                grain_offsets.append(g)
                atom_offsets.append(atom_offsets[-1] + size)
                size = 0
            size += count
        grain_offsets.append(self.n_grains)
        atom_offsets.append(atom_offsets[-1] + size)
        self.n_groups = len(grain_offsets) - 1
        group_of_grain = torch.zeros(self.n_grains, dtype=torch.long)
        for k in range(self.n_groups):
            group_of_grain[grain_offsets[k]:grain_offsets[k + 1]] = k
        order = torch.argsort(self.grain, stable=True)
        local = torch.empty_like(order)
        starts = torch.tensor(atom_offsets[:-1])[group_of_grain[self.grain[order]]]
        local[order] = torch.arange(order.shape[0]) - starts
        pair_group = group_of_grain[self.grain[src]]
        by_group = torch.argsort(pair_group, stable=True)
        pair_counts = torch.bincount(pair_group, minlength=self.n_groups)
        # Every group's atoms (grain order) and intra-grain pairs (numbered within the group),
        # concatenated group after group, with the offsets of each group.
        self.register_buffer("group_atoms", order)
        self.register_buffer("group_atom_offsets", torch.tensor(atom_offsets))
        self.register_buffer("group_grain_offsets", torch.tensor(grain_offsets))
        self.register_buffer("group_pair_offsets", torch.cat([torch.zeros(1, dtype=torch.long),
                                                              torch.cumsum(pair_counts, 0)]))
        self.register_buffer("group_src", local[src[by_group]])
        self.register_buffer("group_dst", local[dst[by_group]])

    def graph(self, r: torch.Tensor, cell: torch.Tensor, periodic: bool) -> GrainGraph:
        """The :class:`~cgaa_openmm.graph.GrainGraph` of positions ``r`` (Å) in ``cell`` (Å, rows
        a, b, c; ignored unless ``periodic``), with the model's cutoffs."""
        return build_graph(r, self.grain, self.n_grains, self.intra_src, self.intra_dst, cell, periodic,
                           self.model.grain_cutoff, self.model.atom_pair_cutoff)

    def energy(self, r: torch.Tensor, graph: GrainGraph) -> torch.Tensor:
        """Total energy (eV, float64) of positions ``r`` (Å) with their graph (:meth:`graph`)."""
        return self.model(r, self.species, self.grain, graph).sum()

    def group(self, k: int) -> Tuple[torch.Tensor, int, int]:
        """Atoms (in ``group_atoms`` order) and grain range [g0, g1) of group ``k``."""
        atoms = self.group_atoms[int(self.group_atom_offsets[k]):int(self.group_atom_offsets[k + 1])]
        return atoms, int(self.group_grain_offsets[k]), int(self.group_grain_offsets[k + 1])

    def embed_group(self, k: int, r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`CGAAModel.embed` of group ``k``, from the unwrapped positions ``r`` (Å) of that
        group's atoms (in ``group_atoms`` order)."""
        atoms, g0, g1 = self.group(k)
        p0, p1 = int(self.group_pair_offsets[k]), int(self.group_pair_offsets[k + 1])
        grain = self.grain[atoms] - g0
        return self.model.embed(r, grain_centres(r, grain, g1 - g0), self.species[atoms], grain,
                                self.group_src[p0:p1], self.group_dst[p0:p1])

    def energy_and_gradient(self, r: torch.Tensor, graph: GrainGraph) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy (eV, float64) and its gradient dE/dr (eV/Å, shape of ``r``).

        The gradient is that of :meth:`energy`, but the grain embedding is done one group at a
        time, twice: once without autograd for the grain features, and once per group, after the
        grain-level part, to push that group's share of the gradient back to its atoms. One more
        forward pass of the embedding buys memory that does not grow with the number of groups.
        One group: plain autograd.
        """
        r = r.detach().requires_grad_(True)
        if self.n_groups == 1:
            energy = self.energy(r, graph)
            return energy.detach(), _grad(energy, r)
        unwrapped = (r + graph.unwrap_shift).detach()
        parts: List[torch.Tensor] = []
        readouts: List[torch.Tensor] = []
        with torch.no_grad():
            for k in range(self.n_groups):
                features, readout = self.embed_group(k, unwrapped[self.group(k)[0]])
                parts.append(features)
                readouts.append(readout)
        features = torch.cat(parts).requires_grad_(True)
        atom_energy = torch.cat(readouts).requires_grad_(True)
        centres = grain_centres(r + graph.unwrap_shift, self.grain, self.n_grains)
        energy = self.model.grain_energies(features, atom_energy, centres, r, self.species, self.grain, graph).sum()
        grads = torch.autograd.grad([energy], [r, features, atom_energy])
        gradient, d_features, d_readout = _some(grads[0], r), _some(grads[1], features), _some(grads[2], atom_energy)
        for k in range(self.n_groups):
            atoms, g0, g1 = self.group(k)
            group = unwrapped[atoms].requires_grad_(True)
            group_features, group_readout = self.embed_group(k, group)
            share = (group_features * d_features[g0:g1]).sum() + (group_readout * d_readout[g0:g1]).sum()
            gradient = gradient.index_add(0, atoms, _grad(share, group))
        return energy.detach(), gradient


def _some(gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A gradient, or zeros where autograd found none."""
    return torch.zeros_like(like) if gradient is None else gradient


def _grad(output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """d output / d input for a scalar output (zeros if it does not depend on input)."""
    return _some(torch.autograd.grad([output], [input], allow_unused=True)[0], input)
