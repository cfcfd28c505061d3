"""Periodic boxes down to twice the cutoff (training cells down to one): OpenMM, the training path and tiled copies agree;
a grain the model cannot handle is an error, never a result; precision and finite differences."""
import os

import numpy as np
import openmm
import pytest
import torch
from ase import Atoms
from ase.io import read
from openmm import unit
from scipy.spatial.transform import Rotation

from cgaa_openmm import CGAAPotential
from cgaa_openmm.grains import topology_from_atoms
from cgaa_openmm.graph import grain_faults, intra_pairs
from cgaa_openmm.neighbors import neighbor_pairs
from cgaa_openmm.potential import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV
from cgaa_openmm.model import CGAAModel
from training.data import DataError, bonded_molecules
from training.evaluate import predict_frame

from conftest import data_file, make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EV_PER_A = KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM   # kJ/mol/nm per eV/Å
PLATFORMS = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def liquid_frames():
    """Every frame of the liquid box and its rattled copy, with molecules from bonds."""
    frames = read(data_file("solvent_liquid.xyz"), ":") + read(data_file("liquid_rattled_frame.xyz"), ":")
    for atoms in frames:
        atoms.arrays["molID"] = bonded_molecules(atoms)
    return frames


def topology(atoms, bonds):
    """One residue per molecule; with ``bonds``, the covalent bonds too."""
    top = topology_from_atoms(atoms)
    if bonds:
        from ase.neighborlist import natural_cutoffs, neighbor_list
        i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
        listed = list(top.atoms())
        for a, b in zip(i, j):
            if a < b and atoms.arrays["molID"][a] == atoms.arrays["molID"][b]:
                top.addBond(listed[a], listed[b])
    return top


def openmm_path(potential, atoms, bonds=False, platform="Reference", properties=None, precision="auto"):
    """Energy (eV) and forces (eV/Å) of an OpenMM Context with the potential's System."""
    system = potential.createSystem(topology(atoms, bonds), precision=precision)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                             properties or {})
    context.setPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
    context.setPositions(atoms.positions * 0.1)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / KJ_PER_MOL_PER_EV,
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer) / EV_PER_A)


def whole(atoms):
    """``atoms`` with every molecule (``molID``) made whole along its bonds (ASE's minimum-image
    bond vectors, independent of the package's unwrapping)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list
    i, j, vectors = neighbor_list("ijD", atoms, natural_cutoffs(atoms, mult=1.2))
    same = atoms.arrays["molID"][i] == atoms.arrays["molID"][j]   # molecules may overlap in random boxes
    i, j, vectors = i[same], j[same], vectors[same]
    positions = atoms.positions.copy()
    placed = np.zeros(len(atoms), dtype=bool)
    for start in range(len(atoms)):
        if placed[start]:
            continue
        placed[start], frontier = True, [start]
        while frontier:
            a = frontier.pop()
            for b, vector in zip(j[i == a], vectors[i == a]):
                if not placed[b]:
                    positions[b] = positions[a] + vector
                    placed[b] = True
                    frontier.append(b)
    atoms = atoms.copy()
    atoms.positions = positions
    return atoms


def tiled(atoms):
    """The same configuration, molecules made whole, repeated 2 x 2 x 2 (molecule labels kept
    distinct): every pair and image of the small box, with no box smaller than twice the cutoff."""
    big = whole(atoms).repeat((2, 2, 2))
    big.arrays["molID"] = np.concatenate([atoms.arrays["molID"] + k * (atoms.arrays["molID"].max() + 1)
                                          for k in range(8)])
    return big


def assert_same(a, b, energy_tol, force_tol):
    assert abs(a[0] - b[0]) < energy_tol, (a[0], b[0])
    assert np.abs(a[1] - b[1]).max() < force_tol


def test_liquid_frames_openmm_equals_training_path_and_tiled_copies():
    """The issue's reproduction case: the 12.85 Å box (2.14x the cutoff), whose rattled frame was
    1.2 eV and 4.7 eV/Å off through OpenMM. Single precision (CPU platform), as users run it."""
    potential = CGAAPotential.load("carbonates-xtb")
    for atoms in liquid_frames():
        reference = predict_frame(potential.model, atoms)
        for bonds in (False, True):
            # float32 network: its energy (a few eV of -7640) is good to about 1e-5 relative
            assert_same(openmm_path(potential, atoms, bonds, "CPU", precision="single"), reference, 2e-3, 2e-3)
        energy, forces = predict_frame(potential.model, tiled(atoms))
        assert_same((energy / 8, forces[:len(atoms)]), reference, 2e-3, 2e-3)


def test_the_long_range_tail_is_part_of_the_model_in_openmm_and_the_training_path():
    """A model with ``long_range_tail`` c: its energy in a periodic box is the network's plus
    -c G^2/V in OpenMM and in the training path alike (float64), its forces are the network's,
    and the training path's stress gains +c G^2/V^2 on the diagonal: -dE/dV of the tail, checked
    by central differences over the box volume of the OpenMM energy of the two models, whose
    difference is the tail alone."""
    from training.calculator import CGAACalculator
    atoms = liquid_frames()[0]
    plain = make_model(grain_cutoff=6.0)
    c = 9.0
    tail = CGAAModel(plain.elements, plain.atomic_energies.tolist(),
                     **dict(plain.hyperparameters, long_range_tail=c)).double().eval()
    tail.load_state_dict(plain.state_dict())
    tail.energy_scale = plain.energy_scale
    volume = abs(np.linalg.det(np.asarray(atoms.cell)))
    grains = len(np.unique(atoms.arrays["molID"]))
    openmm_plain = openmm_path(CGAAPotential(plain, {}), atoms)
    openmm_tail = openmm_path(CGAAPotential(tail, {}), atoms)
    assert openmm_tail[0] - openmm_plain[0] == pytest.approx(-c * grains ** 2 / volume, rel=1e-9)
    assert np.abs(openmm_tail[1] - openmm_plain[1]).max() < 1e-12
    assert_same(openmm_tail, predict_frame(tail, atoms), 1e-8, 1e-8)
    stresses = []
    for model in (plain, tail):
        probe = atoms.copy()
        probe.calc = CGAACalculator(model)
        stresses.append(probe.get_stress(voigt=False))
    np.testing.assert_allclose(stresses[1] - stresses[0], c * grains ** 2 / volume ** 2 * np.eye(3), atol=1e-12)
    h = 1e-4
    energies = []
    for scale in (1 + h, 1 - h):
        scaled = atoms.copy()
        scaled.set_cell(np.asarray(atoms.cell) * scale, scale_atoms=True)
        energies.append(openmm_path(CGAAPotential(tail, {}), scaled)[0] - openmm_path(CGAAPotential(plain, {}), scaled)[0])
    pressure = -(energies[0] - energies[1]) / (volume * ((1 + h) ** 3 - (1 - h) ** 3))
    assert pressure == pytest.approx(-(stresses[1] - stresses[0]).trace() / 3, rel=1e-6)


def random_box(cutoff, factor, triclinic, seed):
    """Carbonate molecules (EC, EMC and DEC, the longest) at random places and orientations in a
    box ``factor`` x ``cutoff`` wide face to face (the narrowest face), every atom wrapped into the
    cell on its own, which splits the molecules that cross a face."""
    rng = np.random.default_rng(seed)
    liquid = read(data_file("solvent_liquid.xyz"))
    liquid.arrays["molID"] = bonded_molecules(liquid)
    clusters = read(data_file("solvent_xtb_train_50.xyz"), ":")
    dec = [a for a in clusters if "DEC" in a.info.get("Comp", "")][0]
    molecules = [liquid[liquid.arrays["molID"] == m] for m in np.unique(liquid.arrays["molID"])[:6]]
    molecules += [dec[dec.arrays["molID"] == m] for m in np.unique(dec.arrays["molID"])]
    cell = np.diag([1.0, 1.05, 1.1])
    if triclinic:
        cell[1, 0], cell[2, 0], cell[2, 1] = 0.3, -0.2, 0.25
    widths = np.abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    cell *= factor * cutoff / widths.min()
    atoms = Atoms(cell=cell, pbc=True)
    labels = []
    for m, k in enumerate(rng.choice(len(molecules), 10)):
        centred = molecules[k].positions - molecules[k].positions.mean(0)
        placed = Rotation.random(random_state=rng).apply(centred) + rng.uniform(0, 1, 3) @ cell
        atoms += Atoms(molecules[k].numbers, placed)
        labels += [m] * len(molecules[k])
    atoms.arrays["molID"] = np.array(labels)
    atoms.wrap()
    return atoms


@pytest.mark.parametrize("factor,triclinic,bonds", [
    (2.0, False, False), (2.0, True, True), (2.14, False, True), (2.14, True, False), (2.6, True, False),
    (3.5, False, True), (3.5, True, False)])
def test_random_boxes_openmm_equals_training_path_and_tiled_copies(factor, triclinic, bonds):
    """Random boxes from 2.0x to 3.5x the grain cutoff, orthorhombic and triclinic, topologies with
    and without bonds: the TorchForce (Reference platform, float64) gives the training path's
    energy and forces, and those of the box tiled 2 x 2 x 2."""
    model = make_model(seed=3, grain_cutoff=5.0, pair_cutoff=3.0)
    potential = CGAAPotential(model, {"grains": "molecule"})
    atoms = random_box(5.0, factor, triclinic, seed=int(10 * factor) + triclinic)
    reference = predict_frame(model, atoms)
    energy_tol, force_tol = 1e-10 * abs(reference[0]), 1e-8 * np.abs(reference[1]).max()
    assert_same(openmm_path(potential, atoms, bonds), reference, energy_tol, force_tol)
    energy, forces = predict_frame(model, tiled(atoms))
    assert_same((energy / 8, forces[:len(atoms)]), reference, energy_tol, force_tol)


def rdx_cell(seed):
    """The GFN2-relaxed α-RDX cell (example_systems/rdx-gfn2.pdb: 12.99 x 11.01 x 10.67 Å, 8
    molecules), one ``molID`` per residue, every atom moved by up to 0.1 Å so that no symmetry helps."""
    atoms = read(os.path.join(ROOT, "example_systems", "rdx-gfn2.pdb"))
    atoms.arrays["molID"] = np.unique(atoms.arrays["residuenumbers"], return_inverse=True)[1]
    atoms.positions += np.random.default_rng(seed).uniform(-0.1, 0.1, atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("cutoff", [6.0, 9.0])
def test_a_crystal_cell_narrower_than_two_cutoffs_is_its_supercell_per_cell(cutoff):
    """Training data may hold single crystal cells between one and two cutoffs wide (α-RDX: 10.67 Å
    for a 6 Å grain cutoff; 1.19x a 9 Å one), where a molecule meets two images of another. Through
    the training path the cell's energy is its 2 x 2 x 2 supercell's over 8, the forces are the
    supercell's, and an OpenMM Context of the supercell (float64) gives the same. The cell itself
    is refused by OpenMM (a simulation box needs twice the cutoff), and a cell narrower than one
    cutoff by the training path."""
    torch.manual_seed(cutoff)
    model = CGAAModel([1, 6, 7, 8], [-10.0, -48.0, -60.0, -100.0], channels=8, lmax=2, embed_layers=1,
                      interactions=2, grain_cutoff=cutoff, pair_cutoff=3.0).double().eval()
    model.energy_scale = 3.0
    atoms = rdx_cell(int(cutoff))
    reference = predict_frame(model, atoms)
    energy_tol, force_tol = 1e-10 * abs(reference[0]), 1e-8 * np.abs(reference[1]).max()
    big = tiled(atoms)
    energy, forces = predict_frame(model, big)
    assert_same((energy / 8, forces[:len(atoms)]), reference, energy_tol, force_tol)
    potential = CGAAPotential(model, {"grains": "molecule"})
    energy, forces = openmm_path(potential, big, bonds=True)
    assert_same((energy / 8, forces[:len(atoms)]), reference, energy_tol, force_tol)
    with pytest.raises(ValueError, match="at least twice the cutoff"):
        potential.createSystem(topology(atoms, True))
    narrow = atoms.copy()
    narrow.set_cell(np.asarray(atoms.cell) * [1.0, 1.0, 0.98 * cutoff / atoms.cell[2, 2]], scale_atoms=False)
    with pytest.raises(DataError, match=r"periodic configuration 0 of 1: .* at least 1.0 times the cutoff; use a supercell"):
        predict_frame(model, narrow)


@pytest.mark.parametrize("triclinic", [False, True], ids=["orthorhombic", "triclinic"])
@pytest.mark.parametrize("factor", [1.05, 1.4, 2.0, 2.14, 3.5])
def test_grain_centre_search_matches_brute_force(factor, triclinic):
    """The cell list over grain centres of the random boxes finds every pair within the cutoff,
    with its image, once; below twice the cutoff a pair can meet through two images."""
    atoms = random_box(5.0, factor, triclinic, seed=7)
    points = np.random.default_rng(8).uniform(-0.2, 1.2, (40, 3)) @ np.asarray(atoms.cell)
    cell = np.asarray(atoms.cell)
    i, j, shift = neighbor_pairs(torch.tensor(points), torch.tensor(cell), True, 5.0)
    found = {(a, b, *np.round(s, 6)) for a, b, s in zip(i.tolist(), j.tolist(), shift.numpy())}
    assert len(found) == len(i), "duplicate pairs"
    expected = set()
    frac = points @ np.linalg.inv(cell)
    for a in range(len(points)):
        for b in range(len(points)):
            for n in np.ndindex(5, 5, 5):
                n = np.array(n) - 2
                if a == b and not n.any():
                    continue
                # the image of point b nearest point a, and its neighbours, in lattice units
                lattice = n + np.round(frac[a] - frac[b])
                vector = points[b] + lattice @ cell - points[a]
                if np.linalg.norm(vector) < 5.0:
                    expected.add((a, b, *np.round(lattice @ cell, 6)))
    assert found == expected


def stretched(atoms, molecule, distance):
    """``atoms`` with one hydrogen of ``molecule`` moved ``distance`` Å further from its grain centre."""
    atoms = atoms.copy()
    members = np.nonzero(atoms.arrays["molID"] == molecule)[0]
    hydrogen = members[atoms.numbers[members] == 1][0]
    centre = atoms.positions[members].mean(0)
    outward = atoms.positions[hydrogen] - centre
    atoms.positions[hydrogen] += distance * outward / np.linalg.norm(outward)
    return atoms, hydrogen


@pytest.mark.parametrize("periodic", [False, True], ids=["cluster", "box"])
def test_grain_beyond_the_guard_is_an_error(periodic):
    """An atom farther from its grain centre than the training data's largest grain radius plus
    the margin stops the force, eager and in OpenMM, with an error naming the grain's residue."""
    potential = CGAAPotential.load("carbonates-xtb-fast")
    limit = potential.model.max_grain_radius()
    assert limit == pytest.approx(potential.model.hyperparameters["grain_radius"] + 1.0)
    atoms = liquid_frames()[0] if periodic else read(data_file("solvent_xtb_train_20.xyz"), "-1")
    if not periodic:
        atoms.arrays["molID"] = np.unique(atoms.arrays["molID"], return_inverse=True)[1]
    molecule = int(atoms.arrays["molID"][0])
    atoms, hydrogen = stretched(atoms, molecule, limit)
    top = topology_from_atoms(atoms)
    residue = list(top.atoms())[hydrogen].residue
    module = potential.createModule(top)
    cell = torch.tensor(np.asarray(atoms.cell) * 0.1) if periodic else None
    with pytest.raises(Exception, match=f"atom {hydrogen} is .* from the centre of its grain "
                                        f"\\(residue {residue.name} {residue.id} "):
        module(torch.tensor(atoms.positions * 0.1), cell)
    with pytest.raises(openmm.OpenMMException, match="bonds|box at least twice"):
        system = potential.createSystem(top)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        if periodic:
            context.setPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
        context.setPositions(atoms.positions * 0.1)
        context.getState(getEnergy=True)


def test_grain_that_cannot_be_made_whole_is_reported():
    """A chain of atoms longer than half the box is split by unwrapping: grain_faults reports the
    broken link (whatever the radius guard would say)."""
    cell = torch.eye(3, dtype=torch.float64) * 12.0
    chain = torch.zeros(9, 3, dtype=torch.float64)
    chain[:, 0] = torch.arange(9) * 1.5          # 12 Å long, in a 12 Å box
    grain = torch.zeros(9, dtype=torch.long)
    src, dst = intra_pairs(grain, 1)
    from cgaa_openmm.neighbors import unwrap_shifts
    shift = unwrap_shifts(chain, grain, 1, cell)
    radius, broken = grain_faults(chain, shift, grain, 1, src, dst, cell, True)
    assert (radius < 100.0).all() and len(broken) > 0
    # the same chain at 7.5 Å (6 atoms) is whole
    grain6 = grain[:6]
    src, dst = intra_pairs(grain6, 1)
    shift = unwrap_shifts(chain[:6] - 40.0, grain6, 1, cell)
    radius, broken = grain_faults(chain[:6] - 40.0, shift, grain6, 1, src, dst, cell, True)
    assert len(broken) == 0
    torch.testing.assert_close((chain[:6] - 40.0 + shift) - (chain[0] - 40.0 + shift[0]), chain[:6] - chain[0])


def example_cluster():
    atoms = read(data_file("solvent_xtb_train_20.xyz"), "-1")
    atoms.arrays["molID"] = np.unique(atoms.arrays["molID"], return_inverse=True)[1]
    return atoms


def test_finite_differences_through_the_reference_platform():
    """Central differences of the OpenMM energy (Reference platform: float64) with the shipped
    model as loaded agree with OpenMM's forces to 1e-4 relative."""
    potential = CGAAPotential.load("carbonates-xtb")
    atoms = example_cluster()
    system = potential.createSystem(topology_from_atoms(atoms))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    positions = atoms.positions * 0.1

    def energy(x):
        context.setPositions(x)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    context.setPositions(positions)
    forces = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
        unit.kilojoule_per_mole / unit.nanometer)
    h = 1e-5   # nm
    rng = np.random.default_rng(0)
    largest = np.abs(forces).max()
    for atom in rng.choice(len(atoms), 6, replace=False):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            numeric = -(energy(plus) - energy(minus)) / (2 * h)
            assert abs(numeric - forces[atom, axis]) < 1e-4 * max(abs(forces[atom, axis]), 0.1 * largest), \
                (atom, axis, numeric, forces[atom, axis])


def test_precisions_agree():
    """Single (float32 network), mixed and double precision give the same energy to float32
    precision of the network's part; the energy is summed in float64 in every mode, so even a
    single-precision energy resolves differences far below its size (about -1e4 eV)."""
    potential = CGAAPotential.load("carbonates-xtb-fast")
    atoms = liquid_frames()[0]
    double = openmm_path(potential, atoms, platform="Reference")
    single = openmm_path(potential, atoms, platform="CPU", precision="single")
    runs = {"double": double, "single": single}
    if "OpenCL" in PLATFORMS:
        for precision in ("single", "mixed", "double"):
            runs[f"OpenCL {precision}"] = openmm_path(potential, atoms, platform="OpenCL",
                                                      properties={"Precision": precision})
    for name, (energy, forces) in runs.items():
        assert abs(energy - double[0]) < 2e-3, name        # eV, of -7640 eV: 3e-7 relative
        assert np.abs(forces - double[1]).max() < 2e-3, name
    # float64 accumulation: a 1e-4 Å move of one atom changes a float32 energy smoothly
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-4
    delta = openmm_path(potential, moved, platform="CPU", precision="single")[0] - single[0]
    assert delta == pytest.approx(-single[1][0, 0] * 1e-4, rel=0.2, abs=2e-5)
