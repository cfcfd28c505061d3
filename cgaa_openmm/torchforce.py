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
from typing import List, Optional, Tuple

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
        chunk_atoms: most atoms per group of grains that :meth:`energy_and_forces` embeds at
            once (a grain larger than this is a group of its own).
    """

    def __init__(self, model: CGAAModel, species: torch.Tensor, grain: torch.Tensor, periodic: bool,
                 length_scale: float = 1.0, energy_scale: float = 1.0, anchor: Optional[torch.Tensor] = None,
                 atoms: Optional[torch.Tensor] = None, chunk_atoms: int = 1024):
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

    def prepare(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """Checked positions in Å (N, 3) and the configuration's constant inputs: the unwrap
        shifts, the cell (Å), the grain-centre edges and the atom pairs of the pair term."""
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
        return [r, shift, src, dst, edge_shift, pair_i, pair_j, pair_shift]

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Total energy (``energy_scale`` units) of positions (N, 3) and box (3, 3, rows a, b, c)."""
        r, shift, src, dst, edge_shift, pair_i, pair_j, pair_shift = self.prepare(positions, boxvectors)
        return self.total_energy(r, shift, src, dst, edge_shift, pair_i, pair_j, pair_shift) * self.energy_scale

    def total_energy(self, r: torch.Tensor, shift: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                     edge_shift: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor,
                     pair_shift: torch.Tensor) -> torch.Tensor:
        """Energy (eV) of positions ``r`` (Å) with the inputs from :meth:`prepare`."""
        energies = self.model(r, self.species, self.grain, self.n_grains, shift, self.intra_src, self.intra_dst,
                              src, dst, edge_shift, pair_i, pair_j, pair_shift)
        return energies.sum() + self.model.contact.pair_energy(r, self.species, pair_i, pair_j, pair_shift)

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
        r, shift, src, dst, edge_shift, pair_i, pair_j, pair_shift = self.prepare(positions.detach(), boxvectors)
        r = r.detach().requires_grad_(True)
        if self.n_chunks == 1:
            energy = self.total_energy(r, shift, src, dst, edge_shift, pair_i, pair_j, pair_shift)
            gradient = _grad(energy, r)
        else:
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
            energies = self.model.grain_energies(features, atom_energy, centres, r, self.species, self.grain,
                                                 src, dst, edge_shift, pair_i, pair_j, pair_shift)
            energy = energies.sum() + self.model.contact.pair_energy(r, self.species, pair_i, pair_j, pair_shift)
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


def frozen(module: CGAAForceModule) -> torch.jit.ScriptModule:
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
