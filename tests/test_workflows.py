"""Workflows around the force: openmm-ml's MLPotential("cgaa"), platform agreement, barostat moves.

Units: nm, kJ/mol, kJ/mol/nm (OpenMM's).
"""
import copy
import os

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from cgaa_openmm import CGAAPotential, TopologyMismatchError
from cgaa_openmm.potential import resolve_model_path

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "example_systems", "ecemc.pdb")
PLATFORMS = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
KJ = unit.kilojoule_per_mole


@pytest.fixture(scope="module")
def potential():
    return CGAAPotential.load("carbonates-xtb")


@pytest.fixture(scope="module")
def pdb():
    return app.PDBFile(EXAMPLE)


@pytest.fixture(scope="module")
def system(potential, pdb):
    """``CGAAPotential.createSystem`` of the EC/EMC box: CGAA force, grain bonds, CMMotionRemover."""
    return potential.createSystem(pdb.topology)


def evaluate(system, positions, platform="Reference", groups=-1):
    """Energy (kJ/mol) and forces (kJ/mol/nm) of ``groups`` on one platform."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return (state.getPotentialEnergy().value_in_unit(KJ),
            state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))


def residues_of(topology):
    return sorted(sorted(a.index for a in r.atoms()) for r in topology.residues())


# -- openmm-ml -------------------------------------------------------------------------------------

def test_openmmml_create_system(system, pdb):
    """MLPotential("cgaa") through openmm-ml's createSystem is CGAAPotential.createSystem
    (molecule grains from a model file path here; the box's molecules are its residues)."""
    from openmmml import MLPotential
    ml = MLPotential("cgaa", modelPath=resolve_model_path("carbonates-xtb"), grains="molecule").createSystem(
        pdb.topology)
    energy, forces = evaluate(ml, pdb.positions)
    ref_energy, ref_forces = evaluate(system, pdb.positions)
    print(f"openmm-ml {energy:.6f} vs CGAAPotential {ref_energy:.6f} kJ/mol")
    assert energy == pytest.approx(ref_energy, rel=1e-6)
    assert np.abs(forces - ref_forces).max() < 1e-5 * np.abs(ref_forces).max()
    # Grain bonds make every grain one molecule for OpenMM (barostat, wrapping).
    context = openmm.Context(ml, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    assert sorted(sorted(m) for m in context.getMolecules()) == residues_of(pdb.topology)


def test_openmmml_arguments(pdb):
    """Shipped names load; grains reach the force (atom grains are not this model's grains)."""
    from openmmml import MLPotential
    potential = MLPotential("cgaa", modelPath="carbonates-xtb", grains="atom")
    with pytest.raises(TopologyMismatchError, match="not a grain this model was trained on"):
        potential.createSystem(pdb.topology)
    with pytest.raises(FileNotFoundError, match="neither a model file nor a shipped model"):
        MLPotential("cgaa", modelPath="no-such-model")


def mm_system(pdb):
    """A stand-in force field: stretched harmonic bonds (k 1e4 kJ/mol/nm^2, r0 0.9 r) in group 0."""
    system = openmm.System()
    for atom in pdb.topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*pdb.topology.getPeriodicBoxVectors())
    x = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    bonds = openmm.HarmonicBondForce()
    for a, b in pdb.topology.bonds():
        bonds.addBond(a.index, b.index, 0.9 * np.linalg.norm(x[a.index] - x[b.index]), 1e4)
    system.addForce(bonds)
    return system


def subset_energy(potential, pdb, residue_indices):
    """CGAA energy (kJ/mol) of a box holding only some residues, from a topology of just those."""
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete([r for r in pdb.topology.residues() if r.index not in residue_indices])
    positions = modeller.getPositions().value_in_unit(unit.nanometer)
    box = np.array(modeller.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    module = potential.createModule(modeller.topology)
    return module(torch.tensor(np.array(positions)), torch.tensor(box)).item()


def mixed_case(pdb):
    """Five ML residues (2 EC, 3 EMC) of the box, their atoms, and the stand-in force field."""
    chosen = {0, 5, 20, 33, 47}
    ml_atoms = [a.index for r in pdb.topology.residues() if r.index in chosen for a in r.atoms()]
    return chosen, ml_atoms, mm_system(pdb)


def bond_energy(bonds, positions, skip=()):
    """Energy (kJ/mol) of a HarmonicBondForce, leaving out bonds with both atoms in ``skip``."""
    skip, energy = set(skip), 0.0
    for k in range(bonds.getNumBonds()):
        a, b, r0, kb = bonds.getBondParameters(k)
        if not (a in skip and b in skip):
            r = np.linalg.norm(positions[a] - positions[b])
            energy += 0.5 * kb.value_in_unit(KJ / unit.nanometer ** 2) * (r - r0.value_in_unit(unit.nanometer)) ** 2
    return energy


def test_openmmml_mixed_system(potential, pdb):
    """createMixedSystem: the ML group is the CGAA energy of the ML residues alone; the force
    field keeps only bonds outside them; ML residues stay molecules through the grain bonds."""
    from openmmml import MLPotential
    chosen, ml_atoms, mm = mixed_case(pdb)
    mixed = MLPotential("cgaa", modelPath="carbonates-xtb").createMixedSystem(pdb.topology, mm, ml_atoms,
                                                                            forceGroup=1)
    ml_energy, ml_forces = evaluate(mixed, pdb.positions, groups={1})
    expected = subset_energy(potential, pdb, chosen)
    print(f"mixed ML group {ml_energy:.6f} vs ML residues alone {expected:.6f} kJ/mol")
    assert ml_energy == pytest.approx(expected, rel=1e-6)
    outside = np.setdiff1d(np.arange(pdb.topology.getNumAtoms()), ml_atoms)
    assert np.abs(ml_forces[outside]).max() == 0.0 and np.linalg.norm(ml_forces[ml_atoms], axis=1).min() > 0.0
    x = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    kept = bond_energy(mm.getForce(0), x, skip=ml_atoms)
    assert kept < bond_energy(mm.getForce(0), x)
    assert evaluate(mixed, pdb.positions, groups={0})[0] == pytest.approx(kept, rel=1e-6)
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    assert sorted(sorted(m) for m in context.getMolecules()) == residues_of(pdb.topology)


def test_openmmml_interpolated_mixed_system(potential, pdb):
    """createMixedSystem(interpolate=True): lambda_interpolate 1 is force field outside + CGAA
    inside the ML residues, 0 is the force field alone."""
    from openmmml import MLPotential
    chosen, ml_atoms, mm = mixed_case(pdb)
    mixed = MLPotential("cgaa", modelPath="carbonates-xtb").createMixedSystem(pdb.topology, mm, ml_atoms,
                                                                            interpolate=True)
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pdb.positions)
    x = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    expected = {1.0: subset_energy(potential, pdb, chosen) + bond_energy(mm.getForce(0), x, skip=ml_atoms),
                0.0: bond_energy(mm.getForce(0), x)}
    for value, energy in expected.items():
        context.setParameter("lambda_interpolate", value)
        assert context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ) == pytest.approx(
            energy, rel=1e-6), value
    assert sorted(sorted(m) for m in context.getMolecules()) == residues_of(pdb.topology)


# -- platforms -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(system, pdb):
    """Energy and forces of the box on the Reference platform."""
    return evaluate(system, pdb.positions)


@pytest.mark.parametrize("platform", ["CPU", pytest.param("OpenCL", marks=pytest.mark.opencl),
                                      pytest.param("CUDA", marks=pytest.mark.cuda)])
def test_platforms_agree(system, pdb, reference, platform):
    """CPU and OpenCL give the Reference platform's energy and forces to 1e-4 (relative)."""
    if platform not in PLATFORMS:
        pytest.skip(f"OpenMM platform {platform} not available here (OpenCL needs libOpenCL.so.1 and an ICD "
                    f"such as pocl-opencl-icd; CUDA a GPU and the cuda12 extra)")
    energy, forces = evaluate(system, pdb.positions, platform)
    ref_energy, ref_forces = reference
    de = abs(energy - ref_energy)
    df = np.abs(forces - ref_forces).max() / np.abs(ref_forces).max()
    print(f"{platform} vs Reference: energy {de:.3f} kJ/mol ({de / abs(ref_energy):.1e} relative), "
          f"forces {df:.1e} of the largest")
    # 1e-4 of the -3.7e6 kJ/mol total would allow 370 kJ/mol: ask for 1 kJ/mol (4 float32 roundings).
    assert de < 1.0 and df < 1e-4


# -- barostats -------------------------------------------------------------------------------------

BAROSTATS = {
    "isotropic": lambda p, t: openmm.MonteCarloBarostat(p, t, 1),
    "anisotropic": lambda p, t: openmm.MonteCarloAnisotropicBarostat(openmm.Vec3(1, 1, 1) * p, t,
                                                                     True, True, True, 1),
}


@pytest.mark.parametrize("kind", sorted(BAROSTATS))
def test_barostat_move(potential, system, pdb, kind):
    """After a barostat move every residue is translated rigidly (not scaled), and the context's
    energy and forces are the model's on the scaled positions and the new box."""
    barostat_system = copy.deepcopy(system)
    # 3000 K and 1000 bar: moves are accepted often (the barostat's temperature is never integrated).
    barostat = BAROSTATS[kind](1000 * unit.bar, 3000 * unit.kelvin)
    barostat.setRandomNumberSeed(2024)              # the same trial moves on every run
    barostat_system.addForce(barostat)
    # 1e-6 ps steps from rest: the integrator moves atoms by ~1e-9 nm, the barostat by ~1e-3 nm.
    integrator = openmm.VerletIntegrator(1e-6)
    context = openmm.Context(barostat_system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(pdb.positions)
    before = context.getState(getPositions=True)
    for _ in range(5):
        integrator.step(1)
        after = context.getState(getPositions=True, getEnergy=True, getForces=True)
        if after.getPeriodicBoxVolume() != before.getPeriodicBoxVolume():
            break
    else:
        pytest.fail("the barostat accepted no volume change in 5 attempts")
    old_box = np.array(before.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    box = np.array(after.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    print(f"{kind}: box {np.diag(old_box)} -> {np.diag(box)} nm")
    if kind == "anisotropic":
        assert (np.diag(box) != np.diag(old_box)).sum() == 1     # one axis scaled per move

    x0 = before.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    x1 = after.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    moved = x1 - x0
    stretch = max(np.abs(moved[r] - moved[r].mean(0)).max() for r in residues_of(pdb.topology))
    print(f"{kind}: centres moved up to {np.abs(moved).max():.2e} nm, residues deformed by {stretch:.2e} nm")
    assert np.abs(moved).max() > 1e-4 and stretch < 1e-6

    energy = after.getPotentialEnergy().value_in_unit(KJ)
    forces = after.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    module = potential.createModule(pdb.topology)
    (e_new, f_new), (e_old, f_old) = (module_energy_forces(module, x1, b) for b in (box, old_box))
    scale = np.abs(f_new).max()
    df, df_old = np.abs(forces - f_new).max() / scale, np.abs(f_old - f_new).max() / scale
    print(f"{kind}: context - model: energy {energy - e_new:.3f} kJ/mol, forces {df:.1e}; "
          f"model with the old box: {e_old - e_new:.3f} kJ/mol, forces {df_old:.1e}")
    # Float32 model: ~1 ulp (0.25 kJ/mol) of the -3.7e6 kJ/mol total, 1e-5 of the forces. A move of
    # 1e-4 nm changes the forces by ~1e-3 of their largest: ten times the tolerance tells boxes apart.
    assert abs(energy - e_new) < 1.0 and df < 1e-5
    assert df_old > 1e-4


def module_energy_forces(module, positions, box):
    """Energy (kJ/mol) and forces (kJ/mol/nm) of the eager module at float64 positions and box (nm)."""
    x = torch.tensor(positions, requires_grad=True)
    energy = module(x, torch.tensor(box))
    gradient, = torch.autograd.grad(energy, x)
    return energy.item(), -gradient.numpy()
