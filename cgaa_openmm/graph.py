"""From atoms, grains and a box to the inputs of :class:`~cgaa_openmm.model.CGAAModel`: the
:class:`GrainGraph` type and its one builder, :func:`build_graph`.

Lengths in Å. The intra-grain pair list depends only on the grain assignment,
so it is built once per topology; the grain-centre neighbour list is rebuilt
for every configuration.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch

from .neighbors import atom_pairs, neighbor_pairs, unwrap_shifts


def intra_pairs(grain: torch.Tensor, n_grains: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (src, dst) of distinct atoms that share a grain."""
    counts = torch.bincount(grain, minlength=n_grains)
    order = torch.argsort(grain, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max()) if n_grains > 0 else 0
    slot = torch.arange(width, device=grain.device)
    dst = torch.arange(grain.shape[0], device=grain.device).unsqueeze(1).expand(-1, width)
    valid = slot.unsqueeze(0) < counts[grain].unsqueeze(1)
    src = order[torch.clamp(starts[grain].unsqueeze(1) + slot, max=grain.shape[0] - 1)]
    keep = valid & (src != dst)
    return src[keep], dst[keep]


def neighbour_table(src: torch.Tensor, dst: torch.Tensor, n_atoms: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pairs src -> dst as a dense table: ``(neighbours, present)``, both (n_atoms, K) with K
    the most pairs of any atom; row j holds the src atoms of j's pairs, and ``present`` is False
    in the slots left over (their atom index is j itself)."""
    counts = torch.bincount(dst, minlength=n_atoms)
    width = int(counts.max()) if dst.shape[0] > 0 else 0
    order = torch.argsort(dst, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(dst.shape[0], device=dst.device) - starts[dst[order]]
    atoms = torch.arange(n_atoms, device=dst.device)
    neighbours = atoms.unsqueeze(1).repeat(1, width)
    neighbours[dst[order], slot] = src[order]
    present = torch.arange(width, device=dst.device).unsqueeze(0) < counts.unsqueeze(1)
    return neighbours, present


def grain_centres(positions: torch.Tensor, grain: torch.Tensor, n_grains: int) -> torch.Tensor:
    """Mean position of every grain's atoms (Å), shape (n_grains, 3)."""
    counts = torch.bincount(grain, minlength=n_grains).to(positions.dtype)
    sums = torch.zeros(n_grains, 3, dtype=positions.dtype, device=positions.device)
    return sums.index_add(0, grain, positions) / counts.unsqueeze(1)


class GrainGraph(NamedTuple):
    """The model's inputs besides positions, species and grains: one configuration's (or one
    batch's) graph, built by :func:`build_graph` for training, evaluation and OpenMM alike.

    Lengths in Å. Integer tensors index atoms (``intra_*``, ``pair_*``) or grains (``edge_*``);
    shifts are constants for autograd (lattice vectors).
    """
    n_grains: int
    unwrap_shift: torch.Tensor  #: (N, 3): positions + unwrap_shift has every grain whole
    intra_src: torch.Tensor     #: (P,) ordered pairs of distinct atoms of one grain (:func:`intra_pairs`)
    intra_dst: torch.Tensor
    edge_src: torch.Tensor      #: (E,) grain pairs within the grain cutoff; the vector from grain dst
    edge_dst: torch.Tensor      #: to grain src is R_src + edge_shift - R_dst
    edge_shift: torch.Tensor    #: (E, 3)
    pair_i: torch.Tensor        #: (Q,) atom pairs i < j of different grains within the atom pair cutoff
    pair_j: torch.Tensor
    pair_shift: torch.Tensor    #: (Q, 3): the lattice vector to add to positions[pair_j]


def build_graph(positions: torch.Tensor, grain: torch.Tensor, n_grains: int, intra_src: torch.Tensor,
                intra_dst: torch.Tensor, cell: torch.Tensor, periodic: bool, grain_cutoff: float,
                pair_cutoff: float) -> GrainGraph:
    """The :class:`GrainGraph` of one configuration, as constants for autograd.

    Lengths in Å; ``cell`` rows are the box vectors (ignored unless ``periodic``);
    ``intra_src``/``intra_dst`` come from :func:`intra_pairs` (they depend on the grains alone).
    Grains are unwrapped by :func:`~cgaa_openmm.neighbors.unwrap_shifts`, grain centres paired
    within ``grain_cutoff`` and atoms of different grains within ``pair_cutoff``
    (:func:`~cgaa_openmm.neighbors.atom_pairs`, for the pair terms).
    """
    positions = positions.detach()
    if periodic:
        shift = unwrap_shifts(positions, grain, n_grains, cell)
    else:
        shift = torch.zeros_like(positions)
    centres = grain_centres(positions + shift, grain, n_grains)
    edge_dst, edge_src, edge_shift = neighbor_pairs(centres, cell, periodic, grain_cutoff)
    pair_i, pair_j, pair_shift = atom_pairs(positions, grain, cell, periodic, pair_cutoff)
    return GrainGraph(n_grains, shift, intra_src, intra_dst, edge_src, edge_dst, edge_shift, pair_i, pair_j,
                      pair_shift)


def batch_graphs(graphs: List[GrainGraph], n_atoms: List[int]) -> GrainGraph:
    """One disconnected graph of several configurations' graphs (their atoms and grains numbered
    one configuration after the other; ``n_atoms`` atoms each)."""
    atom_offsets = torch.cumsum(torch.tensor([0] + list(n_atoms[:-1])), 0).tolist()
    grain_offsets = torch.cumsum(torch.tensor([0] + [g.n_grains for g in graphs[:-1]]), 0).tolist()

    def cat(field: str, offsets: Optional[List[int]] = None) -> torch.Tensor:
        parts = [getattr(g, field) for g in graphs]
        if offsets is not None:
            parts = [part + offset for part, offset in zip(parts, offsets)]
        return torch.cat(parts)
    return GrainGraph(sum(g.n_grains for g in graphs), cat("unwrap_shift"), cat("intra_src", atom_offsets),
                      cat("intra_dst", atom_offsets), cat("edge_src", grain_offsets), cat("edge_dst", grain_offsets),
                      cat("edge_shift"), cat("pair_i", atom_offsets), cat("pair_j", atom_offsets), cat("pair_shift"))


def grain_radii(unwrapped: torch.Tensor, grain: torch.Tensor, n_grains: int) -> torch.Tensor:
    """Distance (Å) of every atom from its grain's centre, shape (N,), for whole grains."""
    return torch.linalg.norm(unwrapped - grain_centres(unwrapped, grain, n_grains)[grain], dim=1)


def grain_faults(positions: torch.Tensor, shift: torch.Tensor, grain: torch.Tensor, n_grains: int,
                 intra_src: torch.Tensor, intra_dst: torch.Tensor, cell: torch.Tensor, periodic: bool,
                 link_length: float = 2.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Checks of a configuration (Å) and its unwrap shifts: returns ``(radius, broken)``.

    ``radius``: every atom's distance from its grain's centre (:func:`grain_radii`).
    ``broken``: pairs of atoms of one grain that are within ``link_length`` (Å; longer than
    every covalent bond of organic and biomolecules) of each other as minimum images but not
    once unwrapped, as rows (atom, atom): the grain was not made whole (periodic only). When
    there are none, every grain whose atoms are joined by such links (every molecule) is
    whole, whatever the box: a link spans no periodic boundary after unwrapping.
    """
    with torch.no_grad():
        r = positions + shift
        radius = grain_radii(r, grain, n_grains)
        if not periodic:
            return radius, torch.zeros(0, 2, dtype=torch.long, device=positions.device)
        d = positions[intra_dst] - positions[intra_src]
        minimum_image = d - torch.round(d @ torch.linalg.inv(cell)) @ cell
        link = torch.linalg.norm(minimum_image, dim=1) < link_length
        unwrapped = r[intra_dst] - r[intra_src]
        split = link & (torch.linalg.norm(unwrapped - minimum_image, dim=1) > 1e-3 * link_length)
        return radius, torch.stack([intra_src[split], intra_dst[split]], dim=1)
