"""Energies of pairs of atoms in different grains: the learned pair terms and the contact wall.

They act where grain messages are blind (atoms of two grains in contact, which the grain centres'
multipoles cannot resolve) and are part of the model's grain energies
(:meth:`cgaa_openmm.model.CGAAModel.grain_energies`, half of each pair's energy to each grain).
Lengths in Å, energies in eV. The pairs come from :func:`cgaa_openmm.neighbors.atom_pairs`.
"""
import torch

from .neighbors import atom_pairs


class ContactRepulsion(torch.nn.Module):
    """A short-range wall between atoms of different grains, zero wherever there is data.

    E = strength * sum_pairs (r0 / r - 1)^3 for r < r0, with r0 per pair of elements
    (Å; 0 switches a pair off). Energy and its first two derivatives vanish at r0,
    and the radii are set below the closest contacts of the training data (by
    ``training``), so the term changes nothing the model was fitted on; it keeps
    molecules from passing through each other where a network trained without
    close contacts would let them.
    """

    def __init__(self, radii: torch.Tensor, strength: float):
        super().__init__()
        self.register_buffer("radii", radii, persistent=False)
        self.strength = float(strength)
        self.cutoff = float(radii.max()) if radii.numel() > 0 else 0.0

    def forward(self, positions: torch.Tensor, species: torch.Tensor, grain: torch.Tensor, cell: torch.Tensor,
                periodic: bool) -> torch.Tensor:
        """Wall energy (eV) of positions (N, 3) Å, in ``cell`` (rows a, b, c; Å) if ``periodic``."""
        i, j, shift = atom_pairs(positions, grain, cell, periodic, self.cutoff)
        return self.pair_energy(positions, species, i, j, shift)

    def pair_energy(self, positions: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                    shift: torch.Tensor) -> torch.Tensor:
        """Wall energy (eV) over given pairs of atoms of different grains (any search radius >= ``cutoff``)."""
        return self.pair_energies(positions, species, i, j, shift).sum()

    def pair_energies(self, positions: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                      shift: torch.Tensor) -> torch.Tensor:
        """Wall energy (eV) of every given pair, shape (P,): zero beyond the pair's radius."""
        if self.cutoff <= 0.0:
            return torch.zeros(i.shape[0], dtype=positions.dtype, device=positions.device)
        distance = torch.linalg.norm(positions[j] + shift - positions[i], dim=1)
        r0 = self.radii[species[i], species[j]].to(positions.dtype)
        overlap = torch.clamp(r0 / distance - 1.0, min=0.0)
        return self.strength * overlap.pow(3)


class ExponentialPairs(torch.nn.Module):
    """E = sum_pairs f(r) sum_k w_ab,k exp(-alpha_k (r - r_ref)), f(r) = (1 - (r / r_c)^2)^3 for
    r < r_c: a smooth (C2) sum of exponentials per element pair (a, b) of atoms of different
    grains, with fixed decay constants alpha_k (1/Å). Subclasses define the weights w (eV)."""

    def __init__(self, cutoff: float, decays=(0.5, 1.0, 2.0, 3.0, 4.5, 6.0), reference: float = 2.0):
        super().__init__()
        self.cutoff = float(cutoff)
        self.reference = float(reference)
        self.register_buffer("decays", torch.tensor(decays, dtype=torch.get_default_dtype()), persistent=False)

    def pair_weights(self) -> torch.Tensor:
        """w (eV), (n_elements, n_elements, n_decays), symmetric in the element pair."""
        raise NotImplementedError

    def forward(self, positions: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        """Energy (eV) of each pair (i, j) of atoms of different grains; pairs at |r_j + shift - r_i|
        >= cutoff (Å) give exactly zero, so any search radius >= cutoff will do."""
        distance = torch.linalg.norm(positions[j] + shift - positions[i], dim=1)
        basis = torch.exp(-self.decays.to(distance.dtype) * (distance.unsqueeze(1) - self.reference))
        return self.envelope(distance) * (self.pair_weights()[species[i], species[j]] * basis).sum(1)

    def envelope(self, distance: torch.Tensor) -> torch.Tensor:
        """f(r) = (1 - (r / r_c)^2)^3 for r < r_c, else 0."""
        x = distance / self.cutoff
        return (1.0 - x * x).clamp(min=0.0).pow(3)


class PairRepulsion(ExponentialPairs):
    """A learned, purely repulsive two-body energy between atoms of different grains.

    :class:`ExponentialPairs` with weights w = softplus(gain * theta) >= 0, so every pair term falls
    monotonically with r: the exchange repulsion of atoms in contact, which grain messages cannot
    resolve (they see another grain's atoms only through its multipoles about the grain centre).
    Attraction is left to the network. The gain lets Adam move theta at the pace of the other
    weights; theta starts at ``initial`` (w = 0.0067: almost no term).
    """

    def __init__(self, n_elements: int, cutoff: float, gain: float = 10.0, initial: float = -0.5):
        super().__init__(cutoff)
        self.gain = float(gain)
        self.theta = torch.nn.Parameter(torch.full((n_elements, n_elements, len(self.decays)), float(initial)))

    def pair_weights(self) -> torch.Tensor:
        theta = 0.5 * (self.theta + self.theta.transpose(0, 1))
        return torch.nn.functional.softplus(self.gain * theta)


class PairPotential(ExponentialPairs):
    """A learned two-body energy of either sign between atoms of different grains, repulsive
    below the closest contacts of the training data.

    E = f(s) sum_k w_ab,k exp(-alpha_k (s - r_ref)) + f(r) c_ab exp(-alpha_max (r - r_ref)) with free
    weights w for every decay but the steepest, c = softplus(gain * theta) >= 0 for that one (as in
    :class:`PairRepulsion`), and s = r_floor + softplus(k (r - r_floor)) / k, which equals r above
    the floor r_floor,ab (Å, the closest contact of that element pair in the data) and stays at the
    floor below it (k = ``sharpness``, 1/Å: smooth). The signed part can hold grains together
    (e.g. the peptide bond between residue grains) where there are data, but it cannot make a well
    closer in than any data: there only the repulsive core and the contact wall act.
    """

    def __init__(self, n_elements: int, cutoff: float, floor: torch.Tensor, gain: float = 10.0,
                 initial: float = -0.5, sharpness: float = 10.0):
        super().__init__(cutoff)
        self.gain = float(gain)
        self.sharpness = float(sharpness)
        self.register_buffer("floor", floor.clone(), persistent=False)
        self.weights = torch.nn.Parameter(torch.zeros(n_elements, n_elements, len(self.decays) - 1))
        self.core = torch.nn.Parameter(torch.full((n_elements, n_elements), float(initial)))

    def pair_weights(self) -> torch.Tensor:
        core = torch.nn.functional.softplus(self.gain * 0.5 * (self.core + self.core.transpose(0, 1)))
        return torch.cat([0.5 * (self.weights + self.weights.transpose(0, 1)), core.unsqueeze(2)], dim=2)

    def forward(self, positions: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        """Energy (eV) of each pair (i, j) of atoms of different grains (zero at r >= cutoff)."""
        distance = torch.linalg.norm(positions[j] + shift - positions[i], dim=1)
        floor = self.floor.to(distance.dtype)[species[i], species[j]]
        soft = floor + torch.nn.functional.softplus(self.sharpness * (distance - floor)) / self.sharpness
        decays = self.decays.to(distance.dtype)
        weights = self.pair_weights()[species[i], species[j]]
        signed = (weights[:, :-1] * torch.exp(-decays[:-1] * (soft.unsqueeze(1) - self.reference))).sum(1)
        core = weights[:, -1] * torch.exp(-decays[-1] * (distance - self.reference))
        return self.envelope(soft) * signed + self.envelope(distance) * core
