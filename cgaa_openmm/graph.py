"""From atoms, grains and a box to the inputs of :class:`~cgaa_openmm.model.CGAAModel`.

Lengths in Å. The intra-grain pair list depends only on the grain assignment,
so it is built once per topology; the grain-centre neighbour list is rebuilt
for every configuration.
"""
from typing import Dict, Tuple

import torch

from .neighbors import neighbor_pairs, unwrap_shifts


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


def grain_centres(positions: torch.Tensor, grain: torch.Tensor, n_grains: int) -> torch.Tensor:
    """Mean position of every grain's atoms (Å), shape (n_grains, 3)."""
    counts = torch.bincount(grain, minlength=n_grains).to(positions.dtype)
    sums = torch.zeros(n_grains, 3, dtype=positions.dtype, device=positions.device)
    return sums.index_add(0, grain, positions) / counts.unsqueeze(1)


def atom_pairs(positions: torch.Tensor, grain: torch.Tensor, cell: torch.Tensor, periodic: bool,
               cutoff: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Atom pairs i < j of different grains within ``cutoff`` Å: (i, j, shift (Å)); none if cutoff <= 0."""
    if cutoff <= 0.0:
        empty = torch.zeros(0, dtype=torch.long, device=positions.device)
        return empty, empty, torch.zeros(0, 3, dtype=positions.dtype, device=positions.device)
    i, j, shift = neighbor_pairs(positions.detach(), cell, periodic, cutoff)
    keep = (grain[i] != grain[j]) & (i < j)
    return i[keep], j[keep], shift[keep]


def build_graph(positions: torch.Tensor, grain: torch.Tensor, n_grains: int, intra_src: torch.Tensor,
                intra_dst: torch.Tensor, cell: torch.Tensor, periodic: bool, grain_cutoff: float,
                pair_cutoff: float) -> Dict[str, torch.Tensor]:
    """The model inputs that depend on the configuration, as constants for autograd.

    The one builder of the model's graph, for training, evaluation and OpenMM alike.
    Lengths in Å; ``cell`` rows are the box vectors (ignored unless ``periodic``);
    ``intra_src``/``intra_dst`` come from :func:`intra_pairs`. Returns
    ``unwrap_shift`` (N, 3: positions + unwrap_shift has every grain whole,
    :func:`~cgaa_openmm.neighbors.unwrap_shifts`), ``edge_src``/``edge_dst``/``edge_shift``
    (grain-centre pairs within ``grain_cutoff``), and ``pair_i``/``pair_j``/``pair_shift``
    (atom pairs of different grains within ``pair_cutoff``, for the pair terms).
    """
    positions = positions.detach()
    if periodic:
        shift = unwrap_shifts(positions, grain, n_grains, cell)
    else:
        shift = torch.zeros_like(positions)
    centres = grain_centres(positions + shift, grain, n_grains)
    edge_dst, edge_src, edge_shift = neighbor_pairs(centres, cell, periodic, grain_cutoff)
    pair_i, pair_j, pair_shift = atom_pairs(positions, grain, cell, periodic, pair_cutoff)
    return {"unwrap_shift": shift, "intra_src": intra_src, "intra_dst": intra_dst, "edge_src": edge_src,
            "edge_dst": edge_dst, "edge_shift": edge_shift, "pair_i": pair_i, "pair_j": pair_j,
            "pair_shift": pair_shift}


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
