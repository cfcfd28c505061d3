"""Periodic geometry in TorchScript: grain unwrapping and the neighbour searches (an O(N) cell list).

Lengths are in Å. A cell is a (3, 3) tensor whose *rows* are the box vectors
a, b, c (OpenMM's convention). Integer work (cell indices, image shifts) runs
under ``no_grad``; callers rebuild the differentiable vectors from positions
plus the returned constant shifts, so autograd sees only smooth operations.
"""
from typing import List, Optional, Tuple

import torch


def perpendicular_widths(cell: torch.Tensor) -> torch.Tensor:
    """Distances between opposite faces of the cell (Å), shape (3,)."""
    a, b, c = cell[0], cell[1], cell[2]
    volume = torch.abs(torch.dot(a, torch.linalg.cross(b, c)))
    areas = torch.stack([
        torch.linalg.norm(torch.linalg.cross(b, c)),
        torch.linalg.norm(torch.linalg.cross(c, a)),
        torch.linalg.norm(torch.linalg.cross(a, b)),
    ])
    return volume / areas


def check_box(cell: torch.Tensor, cutoff: float, multiple: float = 2.0) -> None:
    """Raise if a face-to-face width of ``cell`` is shorter than ``multiple`` * ``cutoff``.

    The neighbour search is exact down to widths of one cutoff (a pair may then meet through two
    images, and does); a simulation box must be twice the cutoff (``multiple`` 2, the default),
    the minimum-image rule of OpenMM's own forces. Training data may hold single cells between
    the two (``multiple`` 1): the model is periodic, so they are the supercells' energies per cell.
    """
    widths = perpendicular_widths(cell)
    if bool((widths < multiple * cutoff).any()):
        raise ValueError(
            "periodic box too small: its face-to-face widths are "
            + str([float(w) for w in widths])
            + " Å but the model's cutoff of " + str(cutoff)
            + " Å needs every width to be at least " + ("twice" if multiple == 2.0 else str(multiple) + " times")
            + " the cutoff"
        )


def unwrap_shifts(positions: torch.Tensor, grain: torch.Tensor, n_grains: int, cell: torch.Tensor,
                  refinements: int = 2) -> torch.Tensor:
    """Lattice shifts (Å, shape (N, 3)) that make every grain whole in a periodic cell.

    Uses positions alone (no bonds, no anchor atom). In fractional coordinates,
    each grain's centre is first estimated by the circular mean of its atoms
    along every cell axis (the periodic centre of mass), which does not depend
    on which atom is listed first or on how the grain is wrapped. Every atom
    is then moved to its minimum image about that centre, and the centre is
    recomputed as the plain mean of the moved atoms, ``refinements`` more
    times. The result is exact whenever every atom lies within half a
    face-to-face box width of its grain's centre; :func:`~cgaa_openmm.graph.grain_faults`
    verifies it for every configuration.
    """
    with torch.no_grad():
        frac = positions @ torch.linalg.inv(cell)
        angle = (2.0 * torch.pi) * frac
        zero = torch.zeros(n_grains, 3, dtype=frac.dtype, device=frac.device)
        centre = torch.atan2(zero.index_add(0, grain, torch.sin(angle)),
                             zero.index_add(0, grain, torch.cos(angle))) / (2.0 * torch.pi)
        counts = torch.bincount(grain, minlength=n_grains).to(frac.dtype).unsqueeze(1)
        lattice = -torch.round(frac - centre[grain])
        for _ in range(refinements):
            centre = zero.index_add(0, grain, frac + lattice) / counts
            lattice = -torch.round(frac - centre[grain])
        return lattice @ cell


def neighbor_pairs(points: torch.Tensor, cell: torch.Tensor, periodic: bool,
                   cutoff: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered pairs (i, j), i != j, with |p_j + shift - p_i| < cutoff.

    A cell list (:func:`cell_list_pairs`), O(N). Returns ``(i, j, shift)`` with ``shift`` (Å,
    shape (P, 3)) the lattice vector to add to ``points[j]``. For a non-periodic system ``cell``
    is ignored and the shifts are zero. Periodic cells must be at least ``cutoff`` wide
    (:func:`check_box` with ``multiple`` 1); below twice the cutoff the same two points can be a
    pair through two different images, and are listed once for each.
    """
    return cell_list_pairs(points, cell, periodic, cutoff, None)


def cell_list_pairs(points: torch.Tensor, cell: torch.Tensor, periodic: bool, cutoff: float,
                    grain: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs of :func:`neighbor_pairs`; with ``grain`` (N,), only pairs i < j of different grains.

    Points are binned into cells at least ``cutoff`` wide. For each of the 27 cell offsets in
    turn, every point is compared with the points of its neighbouring cell (a dense (N, most
    points per cell) block), and only the pairs within the cutoff are turned into index lists,
    so the cost is O(N) and the memory that of one offset's block. Unordered pairs (``grain``
    given) need only half the offsets: the pair found at offset -k is the pair at +k reversed.
    """
    with torch.no_grad():
        n_points = points.shape[0]
        if periodic:
            box = cell.to(points.dtype)
            origin = torch.zeros(3, dtype=points.dtype, device=points.device)
        else:
            # A box so large that no periodic image comes within the cutoff.
            origin = points.min(0).values
            box = torch.diag(points.max(0).values - origin + 2.0 * cutoff + 1.0)
        inv = torch.linalg.inv(box)
        frac = (points - origin) @ inv
        wrap = torch.floor(frac)
        wrapped = points - wrap @ box
        wrap = wrap.long()
        n_cells = torch.clamp(torch.floor(perpendicular_widths(box) / cutoff), min=1.0).long()
        index3 = torch.minimum(((frac - wrap) * n_cells).long(), n_cells - 1)
        stride = torch.stack([n_cells[1] * n_cells[2], n_cells[2], torch.ones_like(n_cells[0])])
        flat = (index3 * stride).sum(1)
        total = int(n_cells.prod())

        # Dense table cell -> points (padded with -1).
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=total)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(n_points, device=points.device) - starts[flat[order]]
        width = int(counts.max())
        table = torch.full((total, width), -1, dtype=torch.long, device=points.device)
        table[flat[order], rank] = order

        atoms = torch.arange(n_points, device=points.device).unsqueeze(1)
        r = torch.arange(-1, 2, device=points.device)
        offsets = torch.cartesian_prod(r, r, r)
        found_i: List[torch.Tensor] = []
        found_j: List[torch.Tensor] = []
        found_lattice: List[torch.Tensor] = []
        # cartesian_prod lists (0, 0, 0) 13th: the offsets after it are the reverses of those before.
        for k in range(13 if grain is not None else 0, 27):
            neighbor3 = index3 + offsets[k]
            image = torch.div(neighbor3, n_cells, rounding_mode="floor")
            candidates = table[((neighbor3 - image * n_cells) * stride).sum(1)]  # (N, width)
            others = candidates.clamp(min=0)
            vectors = wrapped[others] + (image.to(points.dtype) @ box - wrapped).unsqueeze(1)
            keep = (candidates >= 0) & ((vectors * vectors).sum(2) < cutoff * cutoff)
            if not bool(image.any(1).all()):  # a point meets itself only in its own image
                keep = keep & ((candidates != atoms) | image.any(1, keepdim=True))
            if grain is not None:
                keep = keep & (grain[others] != grain.unsqueeze(1))
                if k == 13:
                    keep = keep & (candidates > atoms)
            pair = keep.nonzero()
            i, j = pair[:, 0], candidates[pair[:, 0], pair[:, 1]]
            found_i.append(i)
            found_j.append(j)
            found_lattice.append(image[i] - wrap[j] + wrap[i])
        i, j, lattice = torch.cat(found_i), torch.cat(found_j), torch.cat(found_lattice)
        if grain is not None:  # each pair once: as i < j
            swap = j < i
            i, j = torch.where(swap, j, i), torch.where(swap, i, j)
            lattice = torch.where(swap.unsqueeze(1), -lattice, lattice)
        return i, j, lattice.to(points.dtype) @ box


def atom_pairs(positions: torch.Tensor, grain: torch.Tensor, cell: torch.Tensor, periodic: bool,
               cutoff: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Atom pairs i < j of different grains within ``cutoff`` Å: (i, j, shift (Å), the lattice vector
    to add to ``positions[j]``); none if cutoff <= 0 (the pair terms' and contact wall's pairs)."""
    if cutoff <= 0.0:
        empty = torch.zeros(0, dtype=torch.long, device=positions.device)
        return empty, empty, torch.zeros(0, 3, dtype=positions.dtype, device=positions.device)
    return cell_list_pairs(positions.detach(), cell, periodic, cutoff, grain)
