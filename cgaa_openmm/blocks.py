"""Building blocks of the CGAA model: radial bases and the equivariant interaction.

Lengths in Å. Feature irreps are e3nn ``o3.Irreps``; every block is
TorchScript-compatible (compiled with ``e3nn.util.jit.script``).
"""
import functools
import math
from typing import List

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate



class BesselBasis(torch.nn.Module):
    """sin(n pi r / r_max) / r times a polynomial envelope (p = 6) that goes to 0 at r_max.

    The envelope has continuous first and second derivatives at r_max, so
    energies and forces stay smooth when a neighbour crosses the cutoff.
    """

    def __init__(self, r_max: float, n_basis: int = 8, p: int = 6):
        super().__init__()
        self.r_max = float(r_max)
        self.p = float(p)
        self.register_buffer("frequencies", math.pi * torch.arange(1, n_basis + 1) / r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = r / self.r_max
        p = self.p
        envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p) + p * (p + 2.0) * x.pow(p + 1.0)
                    - p * (p + 1.0) / 2.0 * x.pow(p + 2.0)) * (x < 1.0)
        r = r.unsqueeze(-1)
        bessel = math.sqrt(2.0 / self.r_max) * torch.sin(self.frequencies * r) / r
        return bessel * envelope.unsqueeze(-1)


class GaussianBasis(torch.nn.Module):
    """Gaussians on a uniform grid in [0, r_max]; smooth at r = 0 (used for |r'_j|)."""

    def __init__(self, r_max: float, n_basis: int = 8):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, r_max, n_basis))
        self.width = float(r_max) / (n_basis - 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((r.unsqueeze(-1) - self.centres) / self.width) ** 2)


def hidden_irreps(channels: int, lmax: int, full_parity: bool) -> o3.Irreps:
    """``channels`` copies of every irrep up to ``lmax`` (both parities if ``full_parity``)."""
    irreps = []
    for l in range(lmax + 1):
        parities = (1, -1) if full_parity else ((-1) ** l,)
        irreps += [(channels, (l, p)) for p in parities]
    return o3.Irreps(irreps)


class Interaction(torch.nn.Module):
    """Equivariant convolution over directed edges src -> dst, then gate and residual.

    The message from node ``src`` along edge vector r is TP(x_src, Y(r)) with
    per-edge weights from an MLP of a radial basis of |r| (NequIP style); sums
    of messages are scaled by 1/sqrt(avg_neighbors).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps,
                 n_radial: int, radial_hidden: int, avg_neighbors: float):
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.linear_in = o3.Linear(irreps_in, irreps_in)
        wanted = {ir for _, ir in irreps_out}
        mid: List[tuple] = []
        instructions = []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = FullyConnectedNet([n_radial, radial_hidden, radial_hidden, self.tp.weight_numel],
                                        torch.nn.functional.silu)
        self.gate = gate_for(irreps_out)
        self.linear_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_in)
        self.residual = irreps_in == self.gate.irreps_out
        self.norm = 1.0 / math.sqrt(avg_neighbors)
        self.irreps_out = self.gate.irreps_out

    def forward(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor) -> torch.Tensor:
        messages = self.tp(self.linear_in(x)[src], edge_sh, self.radial(edge_radial))
        summed = torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype, device=x.device)
        summed = summed.index_add(0, dst, messages) * self.norm
        y = self.gate(self.linear_out(summed) + self.self_connection(x))
        if self.residual:
            y = y + x
        return y


def to_channels(a: torch.Tensor, channels: int, lmax: int) -> torch.Tensor:
    """Features in e3nn's layout for ``channels`` x (0e + 1o + ... + lmax), shape (n, channels * D),
    as (channels, n, D) with D = (lmax + 1)^2: every channel's components of all l side by side,
    channel-major, so that per-channel batched products and the elementwise work around them run
    on contiguous memory."""
    blocks = []
    start = 0
    for l in range(lmax + 1):
        width = channels * (2 * l + 1)
        blocks.append(a[:, start:start + width].reshape(a.shape[0], channels, 2 * l + 1).transpose(0, 1))
        start += width
    return torch.cat(blocks, dim=2)


def from_channels(t: torch.Tensor, lmax: int) -> torch.Tensor:
    """Inverse of :func:`to_channels`: (channels, n, D) back to e3nn's layout (n, channels * D)."""
    blocks = []
    for l in range(lmax + 1):
        block = t[:, :, l * l:(l + 1) * (l + 1)].transpose(0, 1)
        blocks.append(block.reshape(t.shape[1], t.shape[0] * (2 * l + 1)))
    return torch.cat(blocks, dim=1)


@functools.lru_cache(maxsize=None)
def channelwise_couplings(lmax: int) -> torch.Tensor:
    """(paths, D^3) float64: the Wigner-3j coupling l1 x l2 -> l3 of every path (l <= lmax,
    parity (-1)^l), normalised as e3nn's ("component" irreps, "element" paths)."""
    dim = (lmax + 1) ** 2
    paths = [(l1, l2, l3) for l1 in range(lmax + 1) for l2 in range(lmax + 1) for l3 in range(lmax + 1)
             if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 - l3) % 2 == 0]
    fan_in = [sum(1 for path in paths if path[2] == l) for l in range(lmax + 1)]
    coupling = torch.zeros(len(paths), dim, dim, dim, dtype=torch.float64)
    for p, (l1, l2, l3) in enumerate(paths):
        coupling[p, l1 * l1:(l1 + 1) ** 2, l2 * l2:(l2 + 1) ** 2, l3 * l3:(l3 + 1) ** 2] = (
            o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt((2 * l3 + 1) / fan_in[l3]))
    return coupling.reshape(len(paths), dim * dim * dim)


class ChannelwiseProduct(torch.nn.Module):
    """Every coupling l1 x l2 -> l3 (parity (-1)^l, l <= lmax) of two features with the same
    channels, channel by channel, with one learned weight per coupling and channel: a body-ordered
    product at one node (e3nn's "uuu" tensor product). Inputs and output are (channels, n, D),
    D = (lmax + 1)^2 (:func:`to_channels`).

    The weighted Wigner-3j couplings of each channel are summed into one D x D^2 kernel, so the
    product is one batched matrix product and one weighted sum where e3nn's ``TensorProduct`` does
    one small product per coupling (11 for lmax 2). Normalisation as e3nn's ("component" irreps, "element" paths).
    """

    def __init__(self, channels: int, lmax: int):
        super().__init__()
        coupling = channelwise_couplings(lmax)
        # Constants of lmax, not weights: float64 and not saved. ``_apply`` keeps them exact when the
        # module is cast, so that a float32 model cast to float64 computes as one built in float64.
        self.register_buffer("coupling", coupling.clone(), persistent=False)
        self.weight = torch.nn.Parameter(torch.randn(coupling.shape[0], channels))
        self.channels, self.dim, self.lmax = int(channels), (lmax + 1) ** 2, int(lmax)

    def _apply(self, fn, recurse=True):
        """As ``nn.Module._apply`` (``.to``, ``.float``, ``.double``, ``.cuda``), but the couplings
        only change device: a cast to float32 and back would round them to float32 (1.5e-8)."""
        super()._apply(fn, recurse)
        self.coupling = channelwise_couplings(self.lmax).to(self.coupling.device, copy=True)
        return self

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        kernel = self.weight.t() @ self.coupling.to(self.weight.dtype)
        kernel = kernel.view(self.channels, self.dim, self.dim * self.dim)
        # a against the kernel first (one (n, D) x (D, D^2) product per channel), then b: the same
        # sums as forming the (n, C, D^2) outer product of a and b first, 2-3x faster with the backward.
        partial = torch.bmm(a, kernel).view(a.shape[0], a.shape[1], self.dim, self.dim)
        return (b.unsqueeze(3) * partial).sum(2)


class BodyOrderedUpdate(torch.nn.Module):
    """A residual node update from channelwise products of a density A (irreps ``channels`` x
    (0e + 1o + ... + lmax)): B = A' + A' (x) A' + (A' (x) A') (x) A' (:class:`ChannelwiseProduct`;
    the cube only if ``correlation`` is 3), with A' = A bounded per channel and l
    (:func:`bounded_norms`); the update is x + gate(linear(B) + linear(x)). Up to ``correlation``
    of the parts summed into A are correlated.
    """

    def __init__(self, irreps: o3.Irreps, lmax: int, channels: int, correlation: int = 3):
        super().__init__()
        if correlation not in (2, 3):
            raise ValueError(f"correlation must be 2 or 3, not {correlation}")
        irreps = o3.Irreps(irreps)
        self.channels, self.lmax = int(channels), int(lmax)
        self.irreps_density = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
        self.square = ChannelwiseProduct(channels, lmax)
        self.cube = ChannelwiseProduct(channels, lmax) if correlation == 3 else None
        self.gate = gate_for(irreps)
        self.linear_out = o3.Linear(self.irreps_density, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps, self.gate.irreps_in)

    def forward(self, x: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        a = to_channels(density, self.channels, self.lmax)
        a = a * torch.rsqrt(1.0 + bounded_norms(a, self.lmax))
        square = self.square(a, a)
        b = a + square
        cube = self.cube
        if cube is not None:
            b = b + cube(square, a)
        return x + self.gate(self.linear_out(from_channels(b, self.lmax)) + self.self_connection(x))


class DensityLayer(torch.nn.Module):
    """An intra-grain embedding layer in the manner of MACE: neighbour densities and their products.

    For atom j, A_j = sum_i R(|r_ij|)_{c,l} Y_l(r_ij) s_{i,c} over its intra-grain neighbours i, with
    s_i = linear(scalars of x_i) in ``channels`` channels (may be fewer than x's) and one radial
    weight per channel and l (an MLP of the radial basis); then :class:`BodyOrderedUpdate` of
    linear(A_j) + linear(x_j), so up to ``correlation`` (2 or 3) neighbours and the atom's own
    features (its element, its place r'_j in the grain) are correlated. Only scalars travel along
    pairs: a pair costs C (l_max + 1) radial weights and C (l_max + 1)^2 products, where
    :class:`Interaction` couples every l of the sender with every l of the pair direction.

    Pairs come as a dense table, K slots per atom (:func:`~cgaa_openmm.graph.neighbour_table`):
    the sum over neighbours is then one batched matrix product per atom instead of a (pairs,
    C, (l_max + 1)^2) tensor of messages scattered onto atoms, 2-3x faster with its backward.
    """

    def __init__(self, irreps: o3.Irreps, lmax: int, channels: int, n_radial: int, radial_hidden: int,
                 avg_neighbors: float, correlation: int = 3):
        super().__init__()
        irreps = o3.Irreps(irreps)
        self.channels, self.lmax = int(channels), int(lmax)
        self.update = BodyOrderedUpdate(irreps, lmax, channels, correlation)
        density = self.update.irreps_density
        self.radial = FullyConnectedNet([n_radial, radial_hidden, radial_hidden, channels * (lmax + 1)],
                                        torch.nn.functional.silu)
        self.norm = 1.0 / math.sqrt(avg_neighbors)
        self.density_in = o3.Linear(density, density)
        self.self_in = o3.Linear(irreps, density)
        self.sender = o3.Linear(irreps, o3.Irreps(f"{channels}x0e"))

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor, edge_sh: torch.Tensor,
                edge_radial: torch.Tensor) -> torch.Tensor:
        """x (atoms, irreps) updated from its neighbours: ``neighbours`` (atoms, K) atom indices,
        ``edge_sh`` (atoms, K, (l_max + 1)^2) harmonics of the unit vectors to them, ``edge_radial``
        (atoms, K, n_radial) their radial basis, zero in the slots of absent pairs (the bias-free
        radial MLP keeps them zero)."""
        n, k = neighbours.shape[0], neighbours.shape[1]
        width = self.channels * (self.lmax + 1)
        weighted = self.sender(x)[neighbours].unsqueeze(3) * self.radial(edge_radial).view(
            n, k, self.channels, self.lmax + 1)
        # Every (channel, l) weight times every harmonic component; the l-matching blocks are kept.
        full = torch.bmm(weighted.view(n, k, width).transpose(1, 2), edge_sh).view(
            n, self.channels, self.lmax + 1, edge_sh.shape[2])
        summed = torch.cat([full[:, :, l, l * l:(l + 1) * (l + 1)] for l in range(self.lmax + 1)], dim=2)
        summed = from_channels(summed.transpose(0, 1), self.lmax)
        return self.update(x, self.density_in(summed * self.norm) + self.self_in(x))


class GrainProduct(torch.nn.Module):
    """Body-ordered products of a grain's own features, at the grain node.

    A grain's pooled features h_J = sum_{j in J} W x_j are a density of its atoms around the grain
    centre (each x_j carries the element and r'_j of atom j). Linear maps of h_J, up to quadratic
    or cubic channelwise products of them (:class:`BodyOrderedUpdate`), are invariants of pairs and
    triples of atoms seen from the centre: an atom-centred cluster expansion (ACE) of the whole
    grain, computed once per grain. Without it a grain's internal geometry reaches the energy only
    through contractions with the directions to other grains.
    """

    def __init__(self, irreps: o3.Irreps, lmax: int, channels: int, correlation: int):
        super().__init__()
        self.update = BodyOrderedUpdate(irreps, lmax, channels, correlation)
        self.density_in = o3.Linear(irreps, self.update.irreps_density)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (grains, irreps) updated from products of its own channels."""
        return self.update(h, self.density_in(h))


def bounded_norms(a: torch.Tensor, lmax: int) -> torch.Tensor:
    """|v|^2 of each channel's l-vector v of ``a`` (channels, n, D) (:func:`to_channels`), broadcast
    over its components: ``a * rsqrt(1 + bounded_norms(a))`` maps every v to v / sqrt(1 + |v|^2),
    equivariant, smooth and of norm < 1, so products of them (up to cubic) cannot grow without
    bound from layer to layer."""
    blocks = []
    for l in range(lmax + 1):
        block = a[:, :, l * l:(l + 1) * (l + 1)]
        blocks.append((block * block).sum(2, keepdim=True).expand(block.shape))
    return torch.cat(blocks, dim=2)


def gate_for(irreps_out: o3.Irreps) -> Gate:
    """e3nn gate whose output is ``irreps_out``: SiLU (even) or tanh (odd) on scalars, sigmoid gates on the rest."""
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps([(mul, "0e") for mul, _ in gated]).simplify()
    return Gate(scalars, [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
                gates, [torch.sigmoid], gated)
