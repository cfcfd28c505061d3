"""The model bound to one topology: the TorchScript module inside the TorchForce.

``CGAAForceModule`` is a plain ``torch.nn.Module`` taking positions (and box
vectors) and returning the total energy (of all atoms, or of a selected subset:
the ML region of a mixed ML/MM system), so it can be wrapped by
``openmmtorch.TorchForce`` (after ``torch.jit.script``), ``PythonTorchForce``
or ``openmm.PythonForce`` unchanged. Inputs are multiplied by
``length_scale`` to get Å and the energy in eV by ``energy_scale``: for OpenMM,
nm -> Å is 10 and eV -> kJ/mol is 96.485...
"""
from typing import Optional

import torch

from .blocks import grain_pairs
from .graph import first_atoms, grain_centres, intra_pairs
from .model import CGAAModel
from .neighbors import check_box, neighbor_pairs, unwrap_shifts


class CGAAForceModule(torch.nn.Module):
    """Energy of one system of atoms grouped into grains.

    Args:
        model: a trained :class:`CGAAModel`.
        species: (N,) indices into ``model.elements``.
        grain: (N,) grain index of every atom.
        periodic: whether ``forward`` receives box vectors.
        length_scale: Å per input length unit (10 for nm).
        energy_scale: output energy unit per eV (96.485... for kJ/mol).
        anchor: (n_grains,) atom of every grain that periodic unwrapping measures from;
            a central one (:func:`~cgaa_openmm.grains.central_atoms`) allows grains up
            to a box width across. Default: each grain's first atom.
        atoms: (n,) indices of the atoms this module models, for a ``forward`` that
            receives the positions of every atom of a larger system (the others get zero
            force); ``species``, ``grain`` and ``anchor`` then index these n atoms.
            Default: all atoms.
    """

    def __init__(self, model: CGAAModel, species: torch.Tensor, grain: torch.Tensor, periodic: bool,
                 length_scale: float = 1.0, energy_scale: float = 1.0, anchor: Optional[torch.Tensor] = None,
                 atoms: Optional[torch.Tensor] = None):
        super().__init__()
        self.model = model
        self.n_grains = int(grain.max()) + 1
        self.periodic = bool(periodic)
        self.length_scale = float(length_scale)
        self.energy_scale = float(energy_scale)
        self.cutoff = float(model.grain_cutoff)
        self.select = atoms is not None
        if atoms is None:
            atoms = torch.arange(grain.shape[0])
        if atoms.shape != grain.shape:
            raise ValueError("atoms must give one index per atom of species and grain")
        self.register_buffer("atoms", atoms.long())
        self.register_buffer("species", species.long())
        self.register_buffer("grain", grain.long())
        if anchor is None:
            anchor = first_atoms(self.grain, self.n_grains)
        if anchor.shape != (self.n_grains,) or bool((self.grain[anchor] != torch.arange(self.n_grains)).any()):
            raise ValueError("anchor must give one atom of each grain, in grain order")
        self.register_buffer("anchor", anchor.long())
        src, dst = intra_pairs(self.grain, self.n_grains)
        self.register_buffer("intra_src", src)
        self.register_buffer("intra_dst", dst)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Total energy (``energy_scale`` units) of positions (N, 3) and box (3, 3, rows a, b, c)."""
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
            shift = unwrap_shifts(r, self.grain, self.anchor, cell)
        else:
            cell = torch.zeros(3, 3, dtype=r.dtype, device=r.device)
            shift = torch.zeros_like(r)
        centres = grain_centres(r.detach() + shift, self.grain, self.n_grains)
        dst, src, edge_shift = neighbor_pairs(centres, cell, self.periodic, self.cutoff)
        # One search for the atom pairs of the pair term and of the contact wall (each ignores
        # pairs beyond its own radius).
        pair_i, pair_j, pair_shift = grain_pairs(r, self.grain, cell, self.periodic,
                                                 max(self.model.pair_cutoff, self.model.contact.cutoff))
        energies = self.model(r, self.species, self.grain, self.n_grains, shift,
                              self.intra_src, self.intra_dst, src, dst, edge_shift, pair_i, pair_j, pair_shift)
        energy = energies.sum() + self.model.contact.pair_energy(r, self.species, pair_i, pair_j, pair_shift)
        return energy * self.energy_scale
