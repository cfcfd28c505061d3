"""From atoms, grains and a box to the inputs of :class:`~cgaa_openmm.model.CGAAModel`.

Lengths in Å. The intra-grain pair list depends only on the grain assignment,
so it is built once per topology; the grain-centre neighbour list is rebuilt
for every configuration.
"""
from typing import Dict, Tuple

import torch

from .neighbors import neighbor_pairs, unwrap_shifts


def first_atoms(grain: torch.Tensor, n_grains: int) -> torch.Tensor:
    """Lowest atom index of every grain, shape (n_grains,)."""
    atoms = torch.arange(grain.shape[0], device=grain.device)
    first = torch.full((n_grains,), grain.shape[0], dtype=torch.long, device=grain.device)
    return first.scatter_reduce(0, grain, atoms, "amin")


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


def central_atoms(positions: torch.Tensor, grain: torch.Tensor, n_grains: int) -> torch.Tensor:
    """Atom of every grain nearest its centre, for a configuration whose grains are whole."""
    distance = torch.linalg.norm(positions - grain_centres(positions, grain, n_grains)[grain], dim=1)
    key = grain.to(positions.dtype) * (distance.max() + 1.0) + distance
    order = torch.argsort(key)
    first = torch.cumsum(torch.bincount(grain, minlength=n_grains), 0) - torch.bincount(grain, minlength=n_grains)
    return order[first]


def build_graph(positions: torch.Tensor, grain: torch.Tensor, n_grains: int, cell: torch.Tensor,
                periodic: bool, grain_cutoff: float) -> Dict[str, torch.Tensor]:
    """Model inputs that depend on the configuration (all constants for autograd).

    Periodic grains are unwrapped around the atom nearest the centre found by
    a first unwrapping around each grain's first atom.
    """
    if periodic:
        shift = unwrap_shifts(positions, grain, first_atoms(grain, n_grains), cell)
        anchor = central_atoms(positions + shift, grain, n_grains)
        shift = unwrap_shifts(positions, grain, anchor, cell)
    else:
        shift = torch.zeros_like(positions)
    centres = grain_centres(positions.detach() + shift, grain, n_grains)
    dst, src, edge_shift = neighbor_pairs(centres, cell, periodic, grain_cutoff)
    src_intra, dst_intra = intra_pairs(grain, n_grains)
    return dict(unwrap_shift=shift, intra_src=src_intra, intra_dst=dst_intra,
                edge_src=src, edge_dst=dst, edge_shift=edge_shift)
