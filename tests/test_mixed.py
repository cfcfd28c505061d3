"""Mixed ML/MM systems: one EC (CGAA) in TIP3P water, against the classical system it came from.

The MM system is OPLS-AA-style EC (example_systems/ec.xml) with TIP3P water, 223
atoms in a 1.4 nm box; the shipped model runs in float64 so that energies can
be compared to 1e-9 and differentiated numerically.
"""
import os

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from cgaa_openmm import CGAAPotential, TopologyMismatchError
from cgaa_openmm.mixed import mixed_system

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "example_systems")
CUTOFF = 0.6 * unit.nanometer
EC = list(range(10))   # residue 0 of ec_water.pdb


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The model of one EC is tiny: on a shared CPU, torch's extra threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def potential():
    potential = CGAAPotential.load("carbonates-xtb")
    potential.model.double()
    return potential


@pytest.fixture(scope="module")
def box():
    return app.PDBFile(os.path.join(EXAMPLES, "ec_water.pdb"))


def mm_system(topology, method, **options):
    """The classical system: ec.xml + amber14/tip3p.xml, cutoff 0.6 nm, flexible water unless told."""
    forcefield = app.ForceField(os.path.join(EXAMPLES, "ec.xml"), "amber14/tip3p.xml")
    options = dict(dict(rigidWater=False), **options)
    return forcefield.createSystem(topology, nonbondedMethod=method, nonbondedCutoff=CUTOFF, **options)


def reference_context(system, positions, **parameters):
    """A Reference-platform context of ``system`` with every force in its own group (its index)."""
    for k, force in enumerate(system.getForces()):
        force.setForceGroup(k)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    for name, value in parameters.items():
        context.setParameter(name, value)
    return context


def energy_forces(context):
    """Potential energy (kJ/mol) and forces (kJ/mol/nm)."""
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def force_energies(context):
    """Energy (kJ/mol) of every force of the context's system, by force name."""
    forces = context.getSystem().getForces()
    return {force.getName(): context.getState(getEnergy=True, groups={k}).getPotentialEnergy()
            .value_in_unit(unit.kilojoule_per_mole) for k, force in enumerate(forces)}


def test_mixed_is_cgaa_plus_mm_without_ec_internal_terms(potential, box):
    """Per force: mixed = MM of the box - MM of EC alone (its internal terms); plus the model's EC energy."""
    mm = mm_system(box.topology, app.PME)
    mixed = potential.createMixedSystem(box.topology, mm, residues=[0])
    mm_context, mixed_context = reference_context(mm, box.positions), reference_context(mixed, box.positions)
    e_mm, e_mixed = force_energies(mm_context), force_energies(mixed_context)
    (_, f_mm), (total, forces) = energy_forces(mm_context), energy_forces(mixed_context)

    # EC alone in vacuum: its bonded terms, and its internal nonbonded pairs (inside the cutoff,
    # PME's direct plus reciprocal part is plain Coulomb).
    ec = app.Modeller(box.topology, box.positions)
    ec.delete(list(box.topology.residues())[1:])
    ec_context = reference_context(mm_system(ec.topology, app.NoCutoff), ec.positions)
    e_ec, (_, f_ec) = force_energies(ec_context), energy_forces(ec_context)
    for name in e_mm:
        assert e_mixed[name] == pytest.approx(e_mm[name] - e_ec[name], rel=1e-9, abs=1e-6), name
    bonds = {f.getName(): f for f in mixed.getForces()}["HarmonicBondForce"]
    assert bonds.getNumBonds() == 71 * 2   # the water bonds stay

    positions = torch.tensor(box.getPositions(asNumpy=True).value_in_unit(unit.nanometer), requires_grad=True)
    ec_positions = positions[EC].detach().clone().requires_grad_(True)
    e_model = potential.createModule(ec.topology, periodic=False)(ec_positions)
    f_model, = torch.autograd.grad(-e_model, ec_positions)
    assert e_mixed["CGAA"] == pytest.approx(e_model.item(), rel=1e-12)
    assert total == pytest.approx(sum(e_mm.values()) - sum(e_ec.values()) + e_model.item(), rel=1e-9)

    # The same module on the whole box, restricted to the EC: no force on any water.
    cell = torch.tensor(np.array(box.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))
    e_region = potential.createModule(box.topology, atoms=EC)(positions, cell)
    f_region, = torch.autograd.grad(-e_region, positions)
    assert e_region.item() == pytest.approx(e_model.item(), rel=1e-12)
    explicit = potential.createModule(box.topology, grains=[EC, [10, 11, 12]], atoms=EC)(positions, cell)
    assert explicit.item() == pytest.approx(e_model.item(), rel=1e-12)
    assert torch.equal(f_region[10:], torch.zeros_like(f_region[10:]))

    expected = f_mm.copy()
    expected[EC] += f_model.numpy() - f_ec
    assert np.abs(forces - expected).max() < 1e-6 * np.abs(expected).max()


@pytest.mark.parametrize("interpolate", [False, True])
def test_boundary_forces_match_finite_differences(potential, box, interpolate):
    """Forces on EC atoms and on the water atoms nearest them are -dE/dx of the mixed energy."""
    mm = mm_system(box.topology, app.NoCutoff)
    mixed = potential.createMixedSystem(box.topology, mm, residues=[0], interpolate=interpolate)
    parameters = {"lambda_interpolate": 0.3} if interpolate else {}
    context = reference_context(mixed, box.positions, **parameters)
    x = box.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    distance = np.linalg.norm(x[10:, None] - x[None, EC], axis=2).min(1)
    boundary = [7, 5] + list(10 + np.argsort(distance)[:2])   # carbonyl O, an H; the two nearest water atoms

    def energy(y):
        context.setPositions(y)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    _, forces = energy_forces(context)
    h = 1e-5
    for atom in boundary:
        for axis in range(3):
            plus, minus = x.copy(), x.copy()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            numeric = -(energy(plus) - energy(minus)) / (2 * h)
            assert forces[atom, axis] == pytest.approx(numeric, rel=1e-5, abs=1e-2), (atom, axis)


def with_custom_nonbonded(system, topology, periodic):
    """Add a CustomNonbondedForce (Gaussian repulsion, 1-2 and 1-3 pairs excluded) to ``system``."""
    force = openmm.CustomNonbondedForce("sqrt(a1*a2)*exp(-(r/0.25)^2)")
    force.addPerParticleParameter("a")
    for atom in topology.atoms():
        force.addParticle([1.0 + 0.5 * (atom.element.symbol == "O")])
    force.createExclusionsFromBonds([(a.index, b.index) for a, b in topology.bonds()], 2)
    force.setNonbondedMethod(force.CutoffPeriodic if periodic else force.NoCutoff)
    force.setCutoffDistance(CUTOFF)
    force.setUseLongRangeCorrection(periodic)
    force.setName("CustomNonbondedForce")
    system.addForce(force)
    return system


@pytest.mark.parametrize("method", ["NoCutoff", "CutoffPeriodic", "PME"])
def test_interpolation_ends_are_mm_and_mixed(potential, box, method):
    """λ = 0 is the MM system, λ = 1 the non-interpolating mixed one, for a region wider than the cutoff."""
    periodic = method != "NoCutoff"
    # EC and three waters, near, halfway and farthest: region pairs lie in the LJ switching range
    # (0.45-0.6 nm) and beyond the cutoff, where PME leaves only the reciprocal-space part.
    x = box.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    waters = list(box.topology.residues())[1:]
    far = sorted(waters, key=lambda w: np.linalg.norm(x[next(w.atoms()).index] - x[EC].mean(0)))
    residues = [0, far[0].index, far[len(far) // 2].index, far[-1].index]
    region = [atom.index for w in (far[0], far[len(far) // 2], far[-1]) for atom in w.atoms()] + EC
    d = x[region, None] - x[None, region]
    d -= 1.4 * np.round(d / 1.4)   # minimum image in the cubic 1.4 nm box
    assert np.linalg.norm(d, axis=2).max() > CUTOFF.value_in_unit(unit.nanometer)
    options = dict(constraints=app.HBonds, switchDistance=0.45 * unit.nanometer) if periodic else {}
    mm = with_custom_nonbonded(mm_system(box.topology, getattr(app, method), **options), box.topology, periodic)
    arguments = dict(residues=residues, allowUnknownGrains=True)
    mixed = potential.createMixedSystem(box.topology, mm, **arguments)
    interpolating = potential.createMixedSystem(box.topology, mm, interpolate=True, **arguments)
    e_mm, f_mm = energy_forces(reference_context(mm, box.positions))
    e_mixed, f_mixed = energy_forces(reference_context(mixed, box.positions))
    context = reference_context(interpolating, box.positions)
    for lam, energy, forces in ((0.0, e_mm, f_mm), (1.0, e_mixed, f_mixed)):
        context.setParameter("lambda_interpolate", lam)
        e, f = energy_forces(context)
        assert e == pytest.approx(energy, rel=1e-9), lam
        assert np.abs(f - forces).max() < 1e-6 * np.abs(forces).max(), lam
    assert abs(e_mixed - e_mm) > 1000.0   # the two ends differ: the test can tell them apart


def test_region_is_one_molecule_without_constraints(potential, box):
    """EC's constraints go, water's stay; zero-energy grain bonds keep the EC one molecule for OpenMM."""
    mm = mm_system(box.topology, app.PME, constraints=app.HBonds, rigidWater=True)
    mixed = potential.createMixedSystem(box.topology, mm, residues=list(box.topology.residues())[:1])
    constrained = {i for k in range(mixed.getNumConstraints()) for i in mixed.getConstraintParameters(k)[:2]}
    assert constrained == set(range(10, 223))
    assert mixed.getNumConstraints() == mm.getNumConstraints() - 4   # the four C-H bonds
    kept = potential.createMixedSystem(box.topology, mm, atoms=EC, removeConstraints=False)
    assert kept.getNumConstraints() == mm.getNumConstraints()
    assert EC in [sorted(m) for m in reference_context(mixed, box.positions).getMolecules()]


def test_exception_offsets_in_the_region(box):
    """A parameter offset on an exception between region atoms goes with it; interpolation refuses offsets."""
    mm = mm_system(box.topology, app.NoCutoff)
    nonbonded = next(f for f in mm.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.addGlobalParameter("scale", 0.0)
    pair14 = next(k for k in range(nonbonded.getNumExceptions())
                  if nonbonded.getExceptionParameters(k)[2].value_in_unit(unit.elementary_charge ** 2) != 0)
    assert set(nonbonded.getExceptionParameters(pair14)[:2]) <= set(EC)
    nonbonded.addExceptionParameterOffset("scale", pair14, 1.0, 0.0, 0.0)
    for system, zeroed in ((mm, False), (mixed_system(mm, EC, openmm.CustomExternalForce("0")), True)):
        context = reference_context(system, box.positions)
        energies = []
        for scale in (0.0, 1.0):
            context.setParameter("scale", scale)
            energies.append(force_energies(context)["NonbondedForce"])
        assert (energies[0] == energies[1]) == zeroed
    with pytest.raises(ValueError, match="parameter offsets"):
        mixed_system(mm, EC, openmm.CustomExternalForce("0"), interpolate=True)


def test_bad_regions(potential, box):
    mm = mm_system(box.topology, app.PME)
    with pytest.raises(ValueError, match="residue EC 1 is only partly selected"):
        potential.createMixedSystem(box.topology, mm, atoms=EC[:6])
    with pytest.raises(ValueError, match="residue EC 1 is only partly selected"):
        potential.createForce(box.topology, atoms=EC[:6])
    with pytest.raises(TopologyMismatchError, match="formula H2O, which is not a grain this model was trained on"):
        potential.createMixedSystem(box.topology, mm, residues=[0, 1])
    with pytest.raises(ValueError, match="either as residues or as atoms"):
        potential.createMixedSystem(box.topology, mm)
    with pytest.raises(ValueError, match="in none of the given grains"):
        potential.createForce(box.topology, grains=[EC[:5]], atoms=EC)
    ec = app.Modeller(box.topology, box.positions)
    ec.delete(list(box.topology.residues())[1:])
    with pytest.raises(ValueError, match="223 particles but the topology 10 atoms"):
        potential.createMixedSystem(ec.topology, mm, residues=[0])
