"""The CGAA model: grain embedding, grain-level message passing, grain energies.

Units: positions Å, energies eV. The model maps one (batched) graph to grain
energies E_J; E_tot = sum_J E_J and forces F_j = -dE_tot/dr_j come from
autograd. With every atom its own grain the same module is a conventional
all-atom equivariant MLIP (NequIP-like), the baseline of every comparison.

Design (see docs/model.md):

* Grain embedding. R_J is the mean of grain J's (unwrapped) atom positions and
  r'_j = r_j - R_J. Each atom starts from its element and the solid harmonics
  of r'_j (1o and higher irreps, smooth at r'_j = 0), then exchanges
  ``embed_layers`` rounds of messages with the other atoms *of its own grain*
  over their internal vectors r'_i - r'_j (``embed_kind``: NequIP-like full tensor products,
  or MACE-like neighbour densities and their products per atom). Grain features are the sum over the
  grain's atoms, so they do not depend on the order in which atoms are listed,
  yet hold the internal geometry that sets the intramolecular forces.
* Optionally (``grain_products``), body-ordered products of each grain's pooled features with
  themselves: pairs and triples of its atoms correlated around R_J, once per grain.
* Message passing between grains only, over a radius graph of grain centres
  with a smooth cutoff (``interactions`` rounds).
* Readout: E_J = s * (MLP(grain scalars) + sum_{j in J} linear(atom scalars))
  + sum_{j in J} E0(Z_j).
"""
import contextlib
from typing import List, Optional, Tuple

import e3nn
import torch
from e3nn import o3

from .blocks import BesselBasis, DensityLayer, GaussianBasis, GrainProduct, Interaction, hidden_irreps
from .graph import GrainGraph, grain_centres, neighbour_table
from .pairs import ContactRepulsion, PairPotential, PairRepulsion

DEFAULT_HYPERPARAMETERS = dict(
    channels=32,           # multiplicity of every irrep
    lmax=2,                # highest spherical-harmonic order of features and edges
    full_parity=False,     # keep both parities of every l (about 2x slower)
    grain_cutoff=6.0,      # Å, radius of the grain-centre graph
    intra_cutoff=5.0,      # Å, radius of intra-grain atom pairs
    centre_scale=2.0,      # Å, length unit of the solid harmonics of r'_j
    embed_layers=1,        # intra-grain message-passing rounds in the grain embedding
    embed_kind="interaction",  # their form: blocks.Interaction (full tensor products along pairs) or
                               # "density" (blocks.DensityLayer: MACE-like, scalars along pairs, products per atom)
    grain_products=0,      # blocks.GrainProduct layers on each grain's own pooled features (grain-level ACE)
    grain_correlation=3,   # their body order: products of up to 2 or 3 of the grain's atoms
    density_channels=None,  # channels of the density layers' neighbour densities and products (None: channels)
    embed_correlation=3,   # body order of the density layers: products of up to 2 or 3 neighbour densities
    interactions=2,        # inter-grain message-passing rounds
    n_radial=8,            # radial basis functions
    radial_hidden=64,      # width of the radial MLPs
    readout_hidden=32,     # width of the grain-energy MLP
    avg_intra_neighbors=10.0,   # mean intra-grain partners per atom (message normalisation)
    avg_grain_neighbors=10.0,   # mean neighbour grains per grain
    avg_grain_atoms=10.0,       # mean atoms per grain
    energy_scale=1.0,      # eV, scale of the network outputs
    grain_radius=None,     # Å, largest distance of an atom from its grain centre in the training data
                           # (set by training; the run-time guard allows it plus GRAIN_RADIUS_MARGIN)
    contact_radii=None,    # Å, per element pair (elements order): wall radius between atoms of different grains
    contact_fraction=0.7,  # training sets contact_radii to this fraction of the closest contacts in the data
    contact_strength=100.0,  # eV, prefactor of the contact wall (see pairs.ContactRepulsion)
    pair_cutoff=0.0,       # Å, learned two-body term between atoms of different grains (0: none)
    pair_kind="repulsive",  # pairs.PairRepulsion (>= 0 everywhere) or "signed" (pairs.PairPotential:
                            # can bind grains, e.g. residues; repulsive below the data's closest contacts)
    long_range_tail=0.0,   # eV Å^3, c of the mean-field energy -c G^2/V that a periodic box of G grains and
                           # volume V gets for the reference's dispersion between grains beyond grain_cutoff
                           # (cgaa_openmm.correction; 0: none). Part of the model: training takes it out of
                           # the labels, and every energy, force and stress path adds it back.
)


#: Å: how far beyond the training data's largest grain radius an atom may stray before the run-time
#: guard (:meth:`CGAAModel.max_grain_radius`) stops the force with an error.
GRAIN_RADIUS_MARGIN = 1.0


class CGAAModel(torch.nn.Module):
    """Coarse-grained all-atom equivariant potential.

    Args:
        elements: atomic numbers the model knows; ``species`` inputs index this list.
        atomic_energies: E0 per element (eV), same order as ``elements``.
        **hyperparameters: see :data:`DEFAULT_HYPERPARAMETERS`.
    """

    #: Intra-grain pairs as a neighbour table (density layers) rather than pair lists; a constant, so
    #: that TorchScript compiles only the branch of the model's own layers.
    dense_pairs: torch.jit.Final[bool]

    def __init__(self, elements: List[int], atomic_energies: Optional[List[float]] = None, **hyperparameters):
        super().__init__()
        unknown = set(hyperparameters) - set(DEFAULT_HYPERPARAMETERS)
        if unknown:
            raise ValueError(f"unknown model hyperparameters: {sorted(unknown)}")
        hp = dict(DEFAULT_HYPERPARAMETERS, **hyperparameters)
        self.hyperparameters = hp
        self.elements = [int(z) for z in elements]
        self.grain_cutoff = float(hp["grain_cutoff"])
        self.centre_scale = float(hp["centre_scale"])
        self.energy_scale = float(hp["energy_scale"])
        self.channels = int(hp["channels"])
        self.lmax = int(hp["lmax"])
        self.intra_cutoff = float(hp["intra_cutoff"])
        self.long_range_tail = float(hp["long_range_tail"])

        if atomic_energies is None:
            atomic_energies = [0.0] * len(self.elements)
        self.register_buffer("atomic_energies", torch.tensor(atomic_energies, dtype=torch.get_default_dtype()))

        hidden = hidden_irreps(self.channels, self.lmax, bool(hp["full_parity"]))
        sh = o3.Irreps.spherical_harmonics(self.lmax)
        scalars = o3.Irreps(f"{self.channels}x0e")
        n_radial, radial_hidden = int(hp["n_radial"]), int(hp["radial_hidden"])

        self.solid_harmonics = o3.SphericalHarmonics(sh, False, "component")
        self.spherical_harmonics = o3.SphericalHarmonics(sh, True, "component")
        self.species_embedding = torch.nn.Embedding(len(self.elements), self.channels)
        self.centre_basis = GaussianBasis(float(hp["intra_cutoff"]), n_radial)
        self.centre_embedding = Interaction(scalars, hidden, sh, n_radial, radial_hidden, 1.0)
        self.intra_basis = BesselBasis(float(hp["intra_cutoff"]), n_radial)
        avg_intra = float(hp["avg_intra_neighbors"])
        if hp["embed_kind"] == "interaction":
            intra = [Interaction(hidden, hidden, sh, n_radial, radial_hidden, avg_intra)
                     for _ in range(int(hp["embed_layers"]))]
        elif hp["embed_kind"] == "density":
            density_channels = self.channels if hp["density_channels"] is None else int(hp["density_channels"])
            intra = [DensityLayer(hidden, self.lmax, density_channels, n_radial, radial_hidden, avg_intra,
                                  int(hp["embed_correlation"]))
                     for _ in range(int(hp["embed_layers"]))]
        else:
            raise ValueError(f"embed_kind must be 'interaction' or 'density', not {hp['embed_kind']!r}")
        self.intra_layers = torch.nn.ModuleList(intra)
        self.dense_pairs = hp["embed_kind"] == "density" and len(intra) > 0
        self.atom_readout = o3.Linear(hidden, o3.Irreps("0e"))
        self.pool = o3.Linear(hidden, hidden)
        self.pool_norm = float(hp["avg_grain_atoms"]) ** -0.5
        self.grain_products = torch.nn.ModuleList([
            GrainProduct(hidden, self.lmax, self.channels, int(hp["grain_correlation"]))
            for _ in range(int(hp["grain_products"]))
        ])
        self.grain_basis = BesselBasis(self.grain_cutoff, n_radial)
        self.grain_layers = torch.nn.ModuleList([
            Interaction(hidden, hidden, sh, n_radial, radial_hidden, float(hp["avg_grain_neighbors"]))
            for _ in range(int(hp["interactions"]))
        ])
        radii = hp["contact_radii"]
        radii = torch.zeros(len(self.elements), len(self.elements)) if radii is None else torch.tensor(radii)
        if radii.shape != (len(self.elements), len(self.elements)):
            raise ValueError(f"contact_radii must be a {len(self.elements)}x{len(self.elements)} list of lists (Å)")
        self.contact = ContactRepulsion(radii.to(torch.get_default_dtype()), float(hp["contact_strength"]))
        self.pair_cutoff = float(hp["pair_cutoff"])
        if hp["pair_kind"] not in ("repulsive", "signed"):
            raise ValueError(f"pair_kind must be 'repulsive' or 'signed', not {hp['pair_kind']!r}")
        if self.pair_cutoff <= 0:
            self.pair = None
        elif hp["pair_kind"] == "repulsive":
            self.pair = PairRepulsion(len(self.elements), self.pair_cutoff)
        else:
            # The closest contacts of the data, from which training set the wall radii.
            floor = radii / float(hp["contact_fraction"])
            self.pair = PairPotential(len(self.elements), self.pair_cutoff, floor.to(torch.get_default_dtype()))
        self.atom_pair_cutoff = max(self.pair_cutoff, self.contact.cutoff)
        width = int(hp["readout_hidden"])
        self.grain_readout = torch.nn.Sequential(
            torch.nn.Linear(self.channels, width), torch.nn.SiLU(), torch.nn.Linear(width, 1))

    def max_grain_radius(self) -> float:
        """Å: the farthest an atom may be from its grain centre at run time, the training data's
        largest grain radius plus :data:`GRAIN_RADIUS_MARGIN` (for a model file from before that
        radius was recorded: ``intra_cutoff``)."""
        radius = self.hyperparameters.get("grain_radius")
        return self.intra_cutoff if radius is None else float(radius) + GRAIN_RADIUS_MARGIN

    def forward(self, positions: torch.Tensor, species: torch.Tensor, grain: torch.Tensor,
                graph: GrainGraph) -> torch.Tensor:
        """Grain energies (eV, shape (n_grains,)).

        Args:
            positions: (N, 3) Å; differentiate the sum of the output w.r.t. it for forces.
            species: (N,) index into ``elements``.
            grain: (N,) grain index of every atom, in [0, graph.n_grains).
            graph: the configuration's :class:`~cgaa_openmm.graph.GrainGraph`
                (:func:`~cgaa_openmm.graph.build_graph` with ``grain_cutoff`` and ``atom_pair_cutoff``):
                unwrap shifts, intra-grain pairs, grain edges, and atom pairs of different grains for
                the pair term and the contact wall (each pair's energy shared equally by its two grains).

        Returns float64 energies whatever the model's dtype: the per-element reference energies
        (about -1e4 eV for a cluster of 100 atoms) are added in float64, so that energy
        differences keep float32 precision of the network's part.
        """
        r = positions + graph.unwrap_shift
        centres = grain_centres(r, grain, graph.n_grains)
        features, atom_energy = self.embed(r, centres, species, grain, graph.intra_src, graph.intra_dst)
        return self.grain_energies(features, atom_energy, centres, positions, species, grain, graph)

    def embed(self, r: torch.Tensor, centres: torch.Tensor, species: torch.Tensor, grain: torch.Tensor,
              intra_src: torch.Tensor, intra_dst: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Grain embedding: each grain's features from its own atoms alone.

        Args: ``r`` (N, 3) Å, unwrapped positions (every grain whole); ``centres`` (n_grains, 3) Å,
        their grain centres (:func:`~cgaa_openmm.graph.grain_centres`); the rest as in
        :meth:`forward`. Returns the pooled grain features (n_grains, hidden irreps dim) and
        each grain's sum of per-atom readouts (n_grains,), both in network units. A grain's
        outputs depend only on its own atoms, so grains can be embedded in any groups
        (:meth:`cgaa_openmm.groups.GrainGroups.energy_and_gradient` does, to bound memory).
        """
        n_grains = centres.shape[0]
        relative = r - centres[grain]
        atoms = torch.arange(r.shape[0], device=r.device)
        x = self.species_embedding(species)
        centre_distance = torch.sqrt((relative * relative).sum(1) + 1e-12)
        centre_sh = self.solid_harmonics(relative / self.centre_scale)
        x = self.centre_embedding(x, atoms, atoms, centre_sh, self.centre_basis(centre_distance))
        if self.dense_pairs:
            # Density layers take every atom's intra-grain pairs as one row of a table; pairs at or
            # beyond intra_cutoff and the table's empty slots carry exactly zero (the radial basis
            # and the bias-free radial MLP vanish there).
            with torch.no_grad():
                neighbours, present = neighbour_table(intra_src, intra_dst, r.shape[0])
                far = torch.zeros(3, dtype=r.dtype, device=r.device)
                far[0] = 2.0 * self.intra_cutoff
            vectors = torch.where(present.unsqueeze(2), r[neighbours] - r.unsqueeze(1), far)
            intra_sh = self.spherical_harmonics(vectors.view(-1, 3)).view(vectors.shape[0], vectors.shape[1],
                                                                           (self.lmax + 1) * (self.lmax + 1))
            intra_radial = self.intra_basis(torch.linalg.norm(vectors, dim=2))
            for layer in self.intra_layers:
                x = layer(x, neighbours, intra_sh, intra_radial)
        elif len(self.intra_layers) > 0:
            # Pairs at or beyond intra_cutoff carry exactly zero messages (the radial basis and the
            # bias-free radial MLP vanish there): skipping them is exact and saves their cost.
            with torch.no_grad():
                near = torch.linalg.norm(r[intra_src] - r[intra_dst], dim=1) < self.intra_cutoff
            intra_src, intra_dst = intra_src[near], intra_dst[near]
            vectors = r[intra_src] - r[intra_dst]
            lengths = torch.linalg.norm(vectors, dim=1)
            intra_sh = self.spherical_harmonics(vectors)
            intra_radial = self.intra_basis(lengths)
            for layer in self.intra_layers:
                x = layer(x, intra_src, intra_dst, intra_sh, intra_radial)
        atom_energy = torch.zeros(n_grains, dtype=x.dtype, device=x.device)
        atom_energy = atom_energy.index_add(0, grain, self.atom_readout(x).squeeze(1))
        features = torch.zeros(n_grains, x.shape[1], dtype=x.dtype, device=x.device)
        return features.index_add(0, grain, self.pool(x)) * self.pool_norm, atom_energy

    def grain_energies(self, features: torch.Tensor, atom_energy: torch.Tensor, centres: torch.Tensor,
                       positions: torch.Tensor, species: torch.Tensor, grain: torch.Tensor,
                       graph: GrainGraph) -> torch.Tensor:
        """Grain energies (eV, float64) from the outputs of :meth:`embed`: grain products, message
        passing between the grain ``centres`` (Å) along ``graph``'s edges, readout, the pair term and
        contact wall (of ``positions`` and ``graph``'s atom pairs) and the atomic reference energies."""
        h = features
        for product in self.grain_products:
            h = product(h)
        vectors = centres[graph.edge_src] + graph.edge_shift - centres[graph.edge_dst]
        lengths = torch.linalg.norm(vectors, dim=1)
        grain_sh = self.spherical_harmonics(vectors)
        grain_radial = self.grain_basis(lengths)
        for layer in self.grain_layers:
            h = layer(h, graph.edge_src, graph.edge_dst, grain_sh, grain_radial)
        energy = self.grain_readout(h[:, :self.channels]).squeeze(1) + atom_energy
        energy = energy * self.energy_scale
        i, j, shift = graph.pair_i, graph.pair_j, graph.pair_shift
        pairs = self.contact.pair_energies(positions, species, i, j, shift)
        pair = self.pair
        if pair is not None:
            pairs = pairs + self.energy_scale * pair(positions, species, i, j, shift)
        half = 0.5 * pairs
        energy = energy.index_add(0, grain[i], half).index_add(0, grain[j], half)
        return energy.to(torch.float64).index_add(0, grain, self.atomic_energies.to(torch.float64)[species])


@contextlib.contextmanager
def unscripted_codegen():
    """Build models whose e3nn blocks keep their generated code as ``torch.fx`` modules instead of
    compiling it at once (e3nn's ``jit_script_fx`` off, restored after): building the shipped
    models takes 2 s instead of 5. The forces a potential makes compile them anyway
    (:func:`~cgaa_openmm.torchforce.compiled_core`), to the same numbers."""
    defaults = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**defaults)


def model_in(model: CGAAModel, dtype: torch.dtype) -> CGAAModel:
    """``model`` itself if its weights are ``dtype``, else a copy with its weights cast to ``dtype``."""
    if model.atomic_energies.dtype == dtype:
        return model
    copy = CGAAModel(model.elements, model.atomic_energies.tolist(), **model.hyperparameters).to(dtype)
    copy.load_state_dict(model.state_dict())
    return copy.train(model.training)
