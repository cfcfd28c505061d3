"""Opt-in density corrections (cgaa_openmm.correction): E = -c G^2 / V as its own OpenMM force."""
import json
import os

import numpy as np
import openmm
import pytest
from openmm import app, unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.cli import main
from cgaa_openmm.correction import KBAR_PER_EV_PER_A3, add_correction, tail_coefficient, tail_pressure_kbar
from cgaa_openmm.data import EXAMPLE_BOX

COEFFICIENT = 27.0         # eV Å^3: about -2.2 kbar at the example box's grain density


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """The fast model with a correction 'test' added, saved to a file and loaded back."""
    potential = CGAAPotential.load("carbonates-xtb-fast")
    potential.metadata = add_correction(potential.metadata, "test", COEFFICIENT, 1.095, dict(by="tests"))
    path = str(tmp_path_factory.mktemp("model") / "corrected.pt")
    potential.save(path)
    return path


def correction_energy(system, positions, box_scale=1.0):
    """kJ/mol of the CGAADensityCorrection force alone, the box scaled by ``box_scale``."""
    index = next(i for i, f in enumerate(system.getForces()) if f.getName() == "CGAADensityCorrection")
    system.getForce(index).setForceGroup(7)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    box = [v * box_scale for v in system.getDefaultPeriodicBoxVectors()]
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups={7})
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), state.getForces(asNumpy=True)


def test_the_correction_is_minus_c_g2_over_v_and_its_pressure_is_minus_dE_dV(corrected):
    """The force's energy is -c G^2/V in kJ/mol, its forces are zero, and -dE/dV by central finite
    differences of the box volume is tail_pressure_kbar; tail_coefficient inverts it."""
    pdb = app.PDBFile(EXAMPLE_BOX)
    potential = CGAAPotential.load(corrected)
    system = potential.createSystem(pdb.topology, densityCorrection="test")
    names = [f.getName() for f in system.getForces()]
    assert names.count("CGAADensityCorrection") == 1 and "CGAA" in names
    grains = pdb.topology.getNumResidues()
    edges = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
    volume = abs(np.linalg.det(edges))
    energy, forces = correction_energy(system, pdb.positions)
    ev = energy / 96.48533212
    assert ev == pytest.approx(-COEFFICIENT * grains ** 2 / volume, rel=1e-8)
    assert not np.asarray(forces).any()
    h = 1e-4
    e_plus, _ = correction_energy(system, pdb.positions, 1 + h)
    e_minus, _ = correction_energy(system, pdb.positions, 1 - h)
    dv = volume * ((1 + h) ** 3 - (1 - h) ** 3)
    pressure = -(e_plus - e_minus) / 96.48533212 / dv * KBAR_PER_EV_PER_A3
    n = grains / volume
    assert pressure == pytest.approx(tail_pressure_kbar(COEFFICIENT, n), rel=1e-6)
    assert -3.0 < pressure < -1.0
    assert tail_pressure_kbar(tail_coefficient(4.2, n), n) == pytest.approx(-(4.2 - 0.001), rel=1e-12)


def test_the_default_is_the_model_as_trained_and_a_wrong_name_or_no_box_is_named(corrected):
    pdb = app.PDBFile(EXAMPLE_BOX)
    potential = CGAAPotential.load(corrected)
    plain = potential.createSystem(pdb.topology)        # kept: its forces die with it
    assert "CGAADensityCorrection" not in [f.getName() for f in plain.getForces()]
    with pytest.raises(ValueError, match=r"no density correction 'experimental' \(it has: dispersion-tail, test\)"):
        potential.createSystem(pdb.topology, densityCorrection="experimental")
    with pytest.raises(ValueError, match="no density correction 'test' .*it has: none"):
        CGAAPotential.load("ace-ala-nme-xtb").createSystem(pdb.topology, densityCorrection="test")
    open_topology = app.Topology()
    chain = open_topology.addChain()
    for residue in pdb.topology.residues():
        copy = open_topology.addResidue(residue.name, chain)
        for atom in residue.atoms():
            open_topology.addAtom(atom.name, atom.element, copy)
    with pytest.raises(ValueError, match="no periodic box"):
        potential.createDensityCorrection(open_topology, "test")


def test_simulate_density_correction_is_a_run_setting(tmp_path, corrected):
    out = str(tmp_path / "md")
    quick = ["--model", corrected, "--minimize", "0", "--threads", "1", "--output", out]
    main(["simulate", "--steps", "0", "--density-correction", "test"] + quick)
    with open(os.path.join(out, "settings.json")) as file:
        assert json.load(file)["density_correction"] == "test"
    with pytest.raises(SystemExit, match=r"density_correction 'test' -> None"):
        main(["simulate", "--steps", "2"] + quick)
    with pytest.raises(SystemExit, match="no density correction 'nope'"):
        main(["simulate", "--steps", "2", "--density-correction", "nope", "--overwrite"] + quick)


def test_the_fit_from_an_npt_run_is_the_pressure_step_its_compressibility_gives(tmp_path):
    """density_correction.py on a made-up NPT run (20 ps equilibration, then densities around
    1.19 g/mL): kappa from the volume fluctuations, the step ln(1.095/rho)/kappa, a tail pressure
    that is minus that step at the target, and a model file that carries it."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from density_correction import main as fit_main
    rng = np.random.default_rng(0)
    t = np.round(np.arange(1, 1001) * 0.1, 6)
    rho = np.where(t > 20, 1.19 + rng.normal(0, 0.01, t.size), 1.3)
    run = dict(settings=dict(input="ecemc.pdb", model="carbonates-xtb-fast", correction=None, temperature_K=298.0,
                             equilibration_ps=20.0), series=dict(time_ps=t.tolist(), density_g_per_mL=rho.tolist()))
    (tmp_path / "run.json").write_text(json.dumps(run))
    out = str(tmp_path / "corrected.pt")
    fit = fit_main(["--model", "carbonates-xtb-fast", "--run", str(tmp_path / "run.json"), "--output", out])
    pdb = app.PDBFile(EXAMPLE_BOX)
    grams = sum(a.element.mass.value_in_unit(unit.dalton) for a in pdb.topology.atoms()) / 6.02214076e23
    volume = grams / rho[t > 20] * 1e24
    kappa = volume.var() / (8.617333262e-5 * 298.0 * volume.mean()) / KBAR_PER_EV_PER_A3    # 1/kbar
    assert fit["compressibility_per_kbar"] == pytest.approx(kappa, rel=1e-9)
    assert fit["pressure_step_kbar"] == pytest.approx(np.log(1.095 / rho[t > 20].mean()) / kappa, rel=1e-9)
    n = 60 * 1.095 / grams * 1e-24
    assert tail_pressure_kbar(fit["tail_eV_A3"], n) == pytest.approx(-fit["pressure_step_kbar"], rel=1e-9)
    assert fit["pressure_step_kbar"] < 0 < tail_pressure_kbar(fit["tail_eV_A3"], n)     # too dense: it pushes out
    stored = CGAAPotential.load(out).metadata["density_corrections"]["experiment"]
    assert stored["tail_eV_A3"] == fit["tail_eV_A3"] and stored["target_g_per_mL"] == 1.095


def test_the_dispersion_tail_is_the_references_d4_beyond_the_grain_cutoff(tmp_path):
    """density_correction.py --dispersion-tail: c = -E_tail V / G^2 from the tail at the model's
    grain cutoff (6 Å), so the correction's energy in the box it was measured in is E_tail and its
    pressure E_tail / V; no target density; a JSON without the model's cutoff is refused by name.
    On the committed D4 tails (results/dispersion_tail.json) that mean-field pressure is the one
    measured by scaling the box, to 0.1 %."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from density_correction import main as fit_main
    pdb = app.PDBFile(EXAMPLE_BOX)
    grams = sum(a.element.mass.value_in_unit(unit.dalton) for a in pdb.topology.atoms()) / 6.02214076e23
    tails = dict(pdb="ecemc.pdb", atoms=800, density_g_per_ml=1.2, method="made up",
                 tails=[dict(cutoff=6.0, energy_mev_per_atom=-5.0, pressure_bar=-900.0),
                        dict(cutoff=8.0, energy_mev_per_atom=-2.0, pressure_bar=-350.0)])
    (tmp_path / "tails.json").write_text(json.dumps(tails))
    out = str(tmp_path / "tail.pt")
    fit = fit_main(["--model", "carbonates-xtb-fast", "--dispersion-tail", str(tmp_path / "tails.json"),
                    "--output", out])
    volume = grams / 1.2 * 1e24
    assert fit["tail_eV_A3"] == pytest.approx(4.0 * volume / 60 ** 2, rel=1e-12)
    assert tail_pressure_kbar(fit["tail_eV_A3"], 60 / volume) == pytest.approx(-4.0 / volume * KBAR_PER_EV_PER_A3)
    stored = CGAAPotential.load(out).metadata["density_corrections"]["dispersion-tail"]
    assert stored["tail_eV_A3"] == fit["tail_eV_A3"] and stored["target_g_per_mL"] is None
    tails["tails"] = tails["tails"][1:]
    (tmp_path / "tails.json").write_text(json.dumps(tails))
    with pytest.raises(SystemExit, match=r"not beyond the model's grain cutoff 6.0 Å"):
        fit_main(["--model", "carbonates-xtb-fast", "--dispersion-tail", str(tmp_path / "tails.json"), "--output", out])
    committed = fit_main(["--model", "carbonates-xtb-fast", "--dispersion-tail", "--output", out])
    assert committed["tail_pressure_kbar"] == pytest.approx(committed["measured_tail_pressure_kbar"], rel=1e-3)
