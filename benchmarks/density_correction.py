"""Fit a model's opt-in density correction (cgaa_openmm/correction.py) to an experimental density,
from the model's own NPT run.

    python benchmarks/npt_density.py --model MODEL                          # the run it starts from
    python benchmarks/density_correction.py --model MODEL --name experiment --output MODEL_FILE
    python benchmarks/npt_density.py --model MODEL_FILE --correction experiment   # the check

The NPT run (``--run``, default ``results/npt/MODEL/run.json``) gives the model's
density rho and, from the volume fluctuations that the Monte Carlo barostat samples, its isothermal
compressibility kappa = <dV^2> / (kT <V>). Moving the density from rho to the target rho_t takes an
extra pressure dP = ln(rho_t / rho) / kappa; the tail energy -c G^2/V gives P = -c n^2 (n = G/V at
rho_t): the density moves as if the barostat's pressure changed by dP, which an extra internal
pressure -dP does, so c = c_run + dP / n^2, c_run being the run's own correction (0 without). The model file is
written to ``--output`` with the correction ``--name`` in its metadata (weights untouched) and
the fit printed as JSON. The step is linear in ln(rho): check it with the corrected NPT run, and
fit again from that run if it misses (the step then starts from its c).

    python benchmarks/density_correction.py --model MODEL --dispersion-tail --output MODEL_FILE

instead takes c from the reference itself: GFN2-xTB's D4 dispersion between pairs farther apart
than the model's grain cutoff, which the model cannot see (``benchmarks/dispersion_tail.py``'s
``results/dispersion_tail.json``, evaluated on the bundled liquid box). In a homogeneous liquid that
tail is E_tail = -c G^2/V, so c = -E_tail V / G^2 at the box's density, and its pressure E_tail/V
is checked against the one measured there by scaling the box. The correction is named
``dispersion-tail`` and has no target density. Units: g/mL, kbar, Å, eV.
"""
import argparse
import json
import os
import sys

import numpy as np
from openmm import unit

from common import AVOGADRO, ROOT
from npt_density import block_average

sys.path.insert(0, ROOT)
from cgaa_openmm import CGAAPotential  # noqa: E402
from cgaa_openmm.correction import KBAR_PER_EV_PER_A3, add_correction, correction_of  # noqa: E402
from cgaa_openmm.simulate import read_structure  # noqa: E402

BOLTZMANN_EV_PER_K = 8.617333262e-5      # CODATA 2018 (ASE's kB is an older value, 3e-7 apart)


def example_box(name: str):
    """The topology of ``example_systems/NAME``, its mass (g) and its grains (residues)."""
    topology, _ = read_structure([os.path.join(ROOT, "example_systems", name)])
    grams = sum(atom.element.mass.value_in_unit(unit.dalton) for atom in topology.atoms()) / AVOGADRO
    return topology, grams, topology.getNumResidues()


def fit(run_path: str, target_g_per_mL: float, blocks: int) -> dict:
    """The correction that moves the NPT run in ``run_path`` to ``target_g_per_mL``."""
    with open(run_path) as file:
        data = json.load(file)
    settings = data["settings"]
    t = np.array(data["series"]["time_ps"])
    production = t > settings["equilibration_ps"] + 1e-9
    rho = np.array(data["series"]["density_g_per_mL"])[production]
    _, grams, grains = example_box(settings["input"])
    volume = grams / rho * 1e24                                             # Å^3
    kappa = volume.var() / (BOLTZMANN_EV_PER_K * settings["temperature_K"] * volume.mean())   # Å^3/eV
    step = np.log(target_g_per_mL / rho.mean()) / kappa                      # eV/Å^3
    n = grains * target_g_per_mL / grams * 1e-24                              # grains per Å^3 at the target
    start = 0.0
    if settings.get("correction"):
        start = correction_of(CGAAPotential.load(settings["model"]).metadata, settings["correction"])["tail_eV_A3"]
    density, stderr = block_average(rho, blocks)
    return dict(tail_eV_A3=start + step / n ** 2, run_tail_eV_A3=start, run_density_g_per_mL=density,
                run_stderr_g_per_mL=stderr, run_production_ps=float(t[production][-1] - settings["equilibration_ps"]),
                compressibility_per_kbar=kappa / KBAR_PER_EV_PER_A3, pressure_step_kbar=step * KBAR_PER_EV_PER_A3,
                grains_per_A3=n, target_g_per_mL=target_g_per_mL, run=os.path.relpath(run_path, ROOT))


def dispersion_tail(path: str, grain_cutoff: float) -> dict:
    """The correction that adds the reference's dispersion beyond ``grain_cutoff`` (Å), from
    ``dispersion_tail.py``'s results in ``path``: c = -E_tail V / G^2 (eV Å^3)."""
    with open(path) as file:
        data = json.load(file)
    tails = {round(float(t["cutoff"]), 6): t for t in data["tails"]}
    if round(grain_cutoff, 6) not in tails:
        raise SystemExit(f"{path} has the dispersion tail beyond {sorted(tails)} Å, not beyond the model's grain "
                         f"cutoff {grain_cutoff} Å: run benchmarks/dispersion_tail.py --cutoffs {grain_cutoff}")
    tail = tails[round(grain_cutoff, 6)]
    topology, grams, grains = example_box(data["pdb"])
    if topology.getNumAtoms() != data["atoms"]:
        raise SystemExit(f"{path} was evaluated on {data['atoms']} atoms, example_systems/{data['pdb']} has "
                         f"{topology.getNumAtoms()}")
    volume = grams / data["density_g_per_ml"] * 1e24                        # Å^3
    energy = tail["energy_mev_per_atom"] * 1e-3 * data["atoms"]            # eV
    coefficient = -energy * volume / grains ** 2
    return dict(tail_eV_A3=coefficient, grain_cutoff_A=grain_cutoff, tail_energy_eV=energy,
                tail_pressure_kbar=energy / volume * KBAR_PER_EV_PER_A3,
                measured_tail_pressure_kbar=tail["pressure_bar"] / 1000.0, box_density_g_per_mL=data["density_g_per_ml"],
                grains=grains, method=data["method"], source=os.path.relpath(path, ROOT))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="shipped model name or model file")
    parser.add_argument("--name", help="the correction's name (default: experiment, or dispersion-tail)")
    parser.add_argument("--dispersion-tail", nargs="?", metavar="JSON",
                        const=os.path.join(ROOT, "benchmarks", "results", "dispersion_tail.json"),
                        help="instead of fitting to a density: the reference's dispersion beyond the model's grain "
                             "cutoff (default JSON: results/dispersion_tail.json)")
    parser.add_argument("--density", type=float, default=1.095, help="g/mL: the target (experiment: 1.095)")
    parser.add_argument("--run", help="the model's NPT run (default: npt_density.py's for --model)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--output", required=True, help="model file to write (may be the model's own)")
    args = parser.parse_args(argv)
    potential = CGAAPotential.load(args.model)
    if args.dispersion_tail:
        if potential.model.long_range_tail:
            raise SystemExit(f"{args.model} already has the long-range tail in the model (long_range_tail = "
                             f"{potential.model.long_range_tail} eV Å^3): a dispersion-tail correction would count it twice")
        name, target = args.name or "dispersion-tail", None
        result = dispersion_tail(args.dispersion_tail, float(potential.model.grain_cutoff))
    else:
        name, target = args.name or "experiment", args.density
        model = os.path.splitext(os.path.basename(args.model))[0]
        run_path = args.run or os.path.join(ROOT, "benchmarks", "results", "npt", model, "run.json")
        result = fit(run_path, args.density, args.blocks)
    command = " ".join(["python benchmarks/density_correction.py"] + (argv if argv is not None else sys.argv[1:]))
    potential.metadata = add_correction(potential.metadata, name, result["tail_eV_A3"], target,
                                        dict(result, command=command))
    potential.save(args.output)
    print(json.dumps(dict(result, name=name, output=args.output), indent=1))
    return result


if __name__ == "__main__":
    main()
