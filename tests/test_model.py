"""Physics of the model: symmetries, forces = -dE/dx, grain-order and periodic-image invariance."""
import itertools

import numpy as np
import pytest
import torch
from e3nn import o3
from e3nn.util.jit import script

from cgaa_openmm.blocks import ChannelwiseProduct, channelwise_couplings, from_channels, to_channels
from cgaa_openmm.graph import intra_pairs, neighbour_table
from cgaa_openmm.neighbors import check_box, neighbor_pairs, perpendicular_widths
from cgaa_openmm.torchforce import CGAACore, compiled_core, plain_executor

from conftest import energy_forces, make_model, make_module

ORTHO = np.diag([11.0, 11.5, 12.0])
TRICLINIC = np.array([[11.0, 0.0, 0.0], [3.0, 11.0, 0.0], [-2.0, 4.0, 12.0]])


@pytest.fixture(scope="module", params=["interaction", "density", "density-products"])
def model(request):
    """Both intra-grain embeddings (blocks.Interaction, blocks.DensityLayer), two layers each; the
    density one also with fewer density channels and a grain-level product (blocks.GrainProduct)."""
    if request.param == "density-products":
        return make_model(embed_kind="density", embed_layers=2, density_channels=4, grain_products=1)
    return make_model(embed_kind=request.param, embed_layers=2)


@pytest.mark.parametrize("grains", ["molID", "atom"])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_reflection_translation(clusters, model, grains, reflect):
    atoms = clusters[0]
    module = make_module(atoms, model, grains=grains)
    e0, f0 = energy_forces(module, atoms.positions)
    torch.manual_seed(3)
    for _ in range(3):
        rot = o3.rand_matrix(dtype=torch.float64).numpy() * (-1.0 if reflect else 1.0)
        shift = np.random.default_rng(0).normal(0, 5, 3)
        e1, f1 = energy_forces(module, atoms.positions @ rot.T + shift)
        assert abs(e1 - e0) < 1e-9 * max(1.0, abs(e0))
        np.testing.assert_allclose(f1, f0 @ rot.T, atol=1e-9)
    assert np.abs(f0).max() > 1e-2, "forces too small for the check to mean anything"


@pytest.mark.parametrize("cell", [ORTHO, TRICLINIC], ids=["orthorhombic", "triclinic"])
def test_periodic_rotation(clusters, model, cell):
    atoms = clusters[0]
    module = make_module(atoms, model, periodic=True)
    e0, f0 = energy_forces(module, atoms.positions, cell)
    rot = o3.rand_matrix(dtype=torch.float64).numpy()
    e1, f1 = energy_forces(module, atoms.positions @ rot.T + 1.7, cell @ rot.T)
    assert abs(e1 - e0) < 1e-9 * abs(e0)
    np.testing.assert_allclose(f1, f0 @ rot.T, atol=1e-9)


@pytest.mark.parametrize("grains,cell", [("molID", None), ("atom", None), ("molID", TRICLINIC)],
                         ids=["molecule-grains", "atom-grains", "molecule-grains-triclinic"])
def test_forces_are_minus_energy_gradient(clusters, model, grains, cell):
    atoms = clusters[0]
    module = make_module(atoms, model, periodic=cell is not None, grains=grains)
    _, forces = energy_forces(module, atoms.positions, cell)
    h = 1e-4
    rng = np.random.default_rng(1)
    for atom, axis in zip(rng.choice(len(atoms), 8, replace=False), rng.integers(0, 3, 8)):
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        numeric = -(energy_forces(module, plus, cell)[0] - energy_forces(module, minus, cell)[0]) / (2 * h)
        assert abs(numeric - forces[atom, axis]) < 1e-6 * max(1.0, abs(numeric)), (atom, axis)


@pytest.mark.parametrize("periodic", [False, True])
def test_atom_order_inside_grains(clusters, model, periodic):
    atoms = clusters[0]
    cell = TRICLINIC if periodic else None
    e0, f0 = energy_forces(make_module(atoms, model, periodic), atoms.positions, cell)
    perm = np.random.default_rng(2).permutation(len(atoms))
    shuffled = atoms[perm]
    e1, f1 = energy_forces(make_module(shuffled, model, periodic), shuffled.positions, cell)
    assert abs(e1 - e0) < 1e-9 * abs(e0)
    np.testing.assert_allclose(f1, f0[perm], atol=1e-9)


@pytest.mark.parametrize("cell", [ORTHO, TRICLINIC], ids=["orthorhombic", "triclinic"])
def test_periodic_images(clusters, model, cell):
    atoms = clusters[0]
    module = make_module(atoms, model, periodic=True)
    e0, f0 = energy_forces(module, atoms.positions, cell)
    # One molecule moved by a lattice vector.
    moved = atoms.positions.copy()
    moved[atoms.arrays["molID"] == atoms.arrays["molID"][0]] += 2 * cell[0] - cell[2]
    e1, f1 = energy_forces(module, moved, cell)
    # Every atom wrapped into the cell on its own, which splits molecules across faces.
    frac = atoms.positions @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    e2, f2 = energy_forces(module, wrapped, cell)
    assert not np.allclose(wrapped, atoms.positions)
    for e, f in ((e1, f1), (e2, f2)):
        assert abs(e - e0) < 1e-9 * abs(e0)
        np.testing.assert_allclose(f, f0, atol=1e-9)


def test_periodic_images_interact(clusters, model):
    """In a box barely larger than twice the cutoff, images change the energy."""
    atoms = clusters[0]
    e_open, _ = energy_forces(make_module(atoms, model, False), atoms.positions)
    e_box, _ = energy_forces(make_module(atoms, model, True), atoms.positions, ORTHO)
    assert abs(e_box - e_open) > 1e-6


@pytest.mark.parametrize("cell", [None, TRICLINIC])
def test_torchscript_equals_eager(clusters, model, cell):
    atoms = clusters[1]
    module = make_module(atoms, model, periodic=cell is not None)
    scripted = script(module)
    e0, f0 = energy_forces(module, atoms.positions, cell)
    e1, f1 = energy_forces(scripted, atoms.positions, cell)
    assert e1 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, atol=1e-10)


@pytest.mark.parametrize("group_atoms", [1, 40], ids=["grain-by-grain", "groups"])
@pytest.mark.parametrize("cell", [None, TRICLINIC])
def test_grouped_forces_equal_autograd(clusters, model, cell, group_atoms):
    """CGAAEnergyAndForces (the TorchForce's module) embeds a few grains at a time and pushes their
    share of the gradient back afterwards: the same energy and -dE/dx as autograd through the
    energy module, eager and as createForce makes it (a scripted module around the frozen core, also
    after the optimising executor was switched off); with selected atoms the others get no force."""
    atoms = clusters[0]
    plain_executor()  # as after any createForce in this process
    module = make_module(atoms, model, periodic=cell is not None)
    e0, f0 = energy_forces(module, atoms.positions, cell)
    grouped = make_module(atoms, model, periodic=cell is not None, forces=True, group_atoms=group_atoms)
    assert grouped.n_groups == {1: 5, 40: 2}[group_atoms]  # 5 molecules of 10-16 atoms
    box = None if cell is None else torch.tensor(cell)
    core = compiled_core(CGAACore(model, periodic=cell is not None, single_group=False))
    compiled = torch.jit.script(make_module(atoms, core, periodic=cell is not None, forces=True,
                                            group_atoms=group_atoms))
    for candidate in (grouped, compiled):
        energy, forces = candidate(torch.tensor(atoms.positions), box)
        assert energy.item() == pytest.approx(e0, rel=1e-12)
        np.testing.assert_allclose(forces.numpy(), f0, atol=1e-10)
    assert np.abs(f0).max() > 1e-2

    # The first two molecules as the ML region of a larger system (as in a mixed ML/MM System).
    region = np.flatnonzero(np.isin(atoms.arrays["molID"], np.unique(atoms.arrays["molID"])[:2]))
    sub = atoms[region]
    e_sub, f_sub = energy_forces(make_module(sub, model, periodic=cell is not None), sub.positions, cell)
    selected = make_module(sub, model, periodic=cell is not None, forces=True, group_atoms=group_atoms,
                           region=region)
    energy, forces = selected(torch.tensor(atoms.positions), box)
    assert energy.item() == pytest.approx(e_sub, rel=1e-12)
    np.testing.assert_allclose(forces.numpy()[region], f_sub, atol=1e-10)
    assert not forces.numpy()[np.setdiff1d(np.arange(len(atoms)), region)].any()


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_channelwise_product_equals_e3nn_tensor_product(lmax):
    """blocks.ChannelwiseProduct (one batched matrix product) is e3nn's "uuu" TensorProduct over
    every allowed coupling, with the same weights, paths and normalisation."""
    channels = 3
    irreps = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    instructions = [(i, j, k, "uuu", True) for i, (_, ir_1) in enumerate(irreps) for j, (_, ir_2) in enumerate(irreps)
                    for k, (_, ir_3) in enumerate(irreps) if ir_3 in ir_1 * ir_2]
    reference = o3.TensorProduct(irreps, irreps, irreps, instructions).double()
    product = ChannelwiseProduct(channels, lmax).double()
    with torch.no_grad():
        reference.weight.copy_(product.weight.reshape(-1))
    torch.manual_seed(0)
    a, b = irreps.randn(6, -1, dtype=torch.float64), irreps.randn(6, -1, dtype=torch.float64)
    ours = from_channels(product(to_channels(a, channels, lmax), to_channels(b, channels, lmax)), lmax)
    assert reference(a, b).abs().max() > 1.0
    # e3nn builds its Wigner 3j in float32 before the cast: agreement to float32 precision.
    torch.testing.assert_close(ours, reference(a, b), rtol=1e-6, atol=1e-6)


def test_a_model_cast_to_float32_and_back_computes_as_one_kept_in_float64(clusters):
    """The Wigner-3j couplings of blocks.ChannelwiseProduct are constants, not weights: a model
    loaded in float32 (as model files are) and cast to float64 keeps them exact, so its energy and
    forces are those of the float64 model with the same weights (they were 1.5e-8 apart, which
    showed as OpenMM vs training-path differences of 1e-10 in energy)."""
    hp = dict(embed_kind="density", embed_layers=1, density_channels=4, grain_products=1)
    back, kept = make_model(**hp).float().double(), make_model(**hp)
    kept.load_state_dict(back.state_dict())
    products = [m for m in back.modules() if isinstance(m, ChannelwiseProduct)]
    assert len(products) == 4
    for product in products:
        assert product.coupling.dtype == torch.float64
        assert torch.equal(product.coupling, channelwise_couplings(2))
    atoms = clusters[0]
    e_back, f_back = energy_forces(make_module(atoms, back), atoms.positions)
    e_kept, f_kept = energy_forces(make_module(atoms, kept), atoms.positions)
    assert e_back == e_kept and np.array_equal(f_back, f_kept)


def brute_force_pairs(points, cell, cutoff):
    pairs = set()
    for i, j in itertools.product(range(len(points)), repeat=2):
        for n in itertools.product(range(-2, 3), repeat=3):
            if i == j and n == (0, 0, 0):
                continue
            shift = np.array(n) @ cell
            if np.linalg.norm(points[j] + shift - points[i]) < cutoff:
                pairs.add((i, j, *np.round(shift, 6)))
    return pairs


@pytest.mark.parametrize("cell,cutoff", [(ORTHO, 5.0), (TRICLINIC, 5.0), (TRICLINIC, 2.0), (ORTHO, 3.0)])
def test_cell_list_matches_brute_force(cell, cutoff):
    rng = np.random.default_rng(4)
    points = rng.uniform(-3, 15, (60, 3))  # also outside the cell: wrapped internally
    i, j, shift = neighbor_pairs(torch.tensor(points), torch.tensor(cell), True, cutoff)
    found = {(a, b, *np.round(s, 6)) for a, b, s in zip(i.tolist(), j.tolist(), shift.numpy())}
    assert len(found) == len(i), "duplicate pairs"
    assert found == brute_force_pairs(points, cell, cutoff)


def test_cell_list_open_boundaries():
    points = np.random.default_rng(5).uniform(0, 20, (80, 3))
    i, j, shift = neighbor_pairs(torch.tensor(points), torch.zeros(3, 3, dtype=torch.float64), False, 4.0)
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    expected = {(a, b) for a, b in zip(*np.nonzero(d < 4.0)) if a != b}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected)
    assert float(shift.abs().max()) == 0.0


def test_box_check_names_sizes():
    assert perpendicular_widths(torch.tensor(TRICLINIC)).min() > 10.0
    with pytest.raises(ValueError, match="periodic box too small"):
        check_box(torch.eye(3, dtype=torch.float64) * 9.0, 5.0)


def test_intra_pairs():
    grain = torch.tensor([1, 0, 1, 2, 1, 0])
    src, dst = intra_pairs(grain, 3)
    expected = {(a, b) for a in range(6) for b in range(6) if a != b and grain[a] == grain[b]}
    assert set(zip(src.tolist(), dst.tolist())) == expected and len(src) == len(expected)


def test_pair_term_sums_smooth_repulsive_pairs_of_atoms_in_different_grains(clusters):
    atoms = clusters[1]
    model = make_model(seed=4)
    module = make_module(atoms, model)
    e_with, _ = energy_forces(module, atoms.positions)
    theta = model.pair.theta.detach().clone()
    with torch.no_grad():
        model.pair.theta.fill_(-1e3)   # w = softplus(-1e4) = 0
    e_without, _ = energy_forces(module, atoms.positions)
    with torch.no_grad():
        model.pair.theta.copy_(theta)
    # By hand: every pair of atoms in different molecules closer than the cutoff, counted once.
    species = [[1, 6, 8].index(int(z)) for z in atoms.numbers]
    symmetric = 0.5 * (theta + theta.transpose(0, 1)).numpy()
    w = np.log1p(np.exp(model.pair.gain * symmetric))       # softplus: every weight >= 0
    decays, rc, r_ref = model.pair.decays.numpy(), model.pair.cutoff, model.pair.reference
    expected, n_pairs = 0.0, 0
    for i, j in itertools.combinations(range(len(atoms)), 2):
        r = np.linalg.norm(atoms.positions[i] - atoms.positions[j])
        if atoms.arrays["molID"][i] != atoms.arrays["molID"][j] and r < rc:
            n_pairs += 1
            expected += (1 - (r / rc) ** 2) ** 3 * (w[species[i], species[j]] * np.exp(-decays * (r - r_ref))).sum()
    assert n_pairs > 10
    assert e_with - e_without == pytest.approx(model.energy_scale * expected, rel=1e-9, abs=1e-12)
    # Energy and force vanish smoothly at the cutoff.
    r = torch.tensor([[0.0, 0.0, 0.0], [rc - 1e-3, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    pair = model.pair(r, torch.tensor([2, 2]), torch.tensor([0]), torch.tensor([1]), torch.zeros(1, 3, dtype=torch.float64))
    force, = torch.autograd.grad(pair.sum(), r)
    assert abs(pair.item()) < 1e-6 and force.abs().max() < 1e-4
    # Repulsive at every distance, for every element pair, whatever the weights: E > 0, dE/dr < 0.
    r = torch.linspace(0.2, rc, 200, dtype=torch.float64, requires_grad=True)
    for a, b in itertools.product(range(3), repeat=2):
        positions = torch.stack([torch.zeros_like(r), r], 1).unsqueeze(-1) * torch.tensor([1.0, 0.0, 0.0])
        energies = model.pair(positions.reshape(-1, 3), torch.tensor([a, b] * len(r)),
                              torch.arange(0, 2 * len(r), 2), torch.arange(1, 2 * len(r), 2),
                              torch.zeros(len(r), 3, dtype=torch.float64))
        slope, = torch.autograd.grad(energies.sum(), r)
        assert (energies[:-1] > 0).all() and (slope[:-1] < 0).all()


def test_neighbour_table_holds_every_pair_once_and_nothing_else():
    """The density layers' table of intra-grain pairs: row j lists exactly the src atoms of the
    pairs src -> j (grains of 1, 3, 10 and 15 atoms, shuffled), empty slots marked and pointing at j."""
    sizes = [15, 1, 10, 3, 15]
    grain = torch.cat([torch.full((s,), g) for g, s in enumerate(sizes)])[torch.randperm(sum(sizes))]
    src, dst = intra_pairs(grain, len(sizes))
    neighbours, present = neighbour_table(src, dst, grain.shape[0])
    assert neighbours.shape == (grain.shape[0], max(sizes) - 1)
    rows, slots = torch.nonzero(present, as_tuple=True)
    assert sorted(zip(rows.tolist(), neighbours[rows, slots].tolist())) == sorted(zip(dst.tolist(), src.tolist()))
    empty = ~present
    assert torch.equal(neighbours[empty], torch.arange(grain.shape[0]).unsqueeze(1).expand_as(neighbours)[empty])
    assert torch.equal(present.sum(1), torch.bincount(dst, minlength=grain.shape[0]))
