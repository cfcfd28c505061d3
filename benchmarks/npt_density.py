"""NPT density of the EC/EMC 3:7 liquid with a shipped model, against experiment (issue 20).

    python benchmarks/npt_density.py [--model carbonates-xtb] [--equilibration-ps 10] [--production-ps 50]
        [--reference TRAJ --reference-top PDB]

Runs ``cgaa-openmm simulate``'s NPT MD (Langevin, Monte Carlo barostat moving molecules whole) of the
bundled 800-atom EC:EMC 3:7-by-weight box (``example_systems/ecemc.pdb``, 20 EC + 40 EMC) at
298 K and 1 bar, as a user would run it: one grain per molecule, the model's default options. The
run lives in ``--run-dir`` and is continued from its checkpoint when the command is repeated, so a
long run can be done in pieces. Frames after ``--equilibration-ps`` are production: the density
(g/mL) is their mean with a block-averaged standard error (``--blocks`` contiguous blocks), and the
molecular centre-of-mass RDFs come from them. With ``--reference`` (frames of the reference level's
own dynamics, any trajectory mdtraj reads, with a topology holding bonds), the same RDFs of those
frames are plotted beside the model's and their RMS difference reported.

Writes ``--output`` (default ``benchmarks/results/npt_density.json``: ``density_g_per_mL``,
``stderr_g_per_mL``, ``production_ps``, ``model``, ``experiment_g_per_mL`` and the run's settings)
and a plot beside it (density against time, RDFs). Units: ps, fs, K, bar, g/mL, nm.
"""
import argparse
import json
import os
import time

import numpy as np

from common import ROOT, machine

from cgaa_openmm.analysis import block_average, density, load_trajectory, molecule_centres, rdf
from cgaa_openmm.simulate import simulate

HERE = os.path.dirname(os.path.abspath(__file__))
#: EC:EMC 3:7 by weight at 298 K (g/mL).
EXPERIMENT_G_PER_ML = 1.095


def com_rdfs(traj, r_max: float, bin_width: float) -> dict:
    """Centre-of-mass RDFs (nm, g) of every pair of residue names, and of all molecules."""
    centres = molecule_centres(traj)
    names = sorted({residue.name for residue in centres.topology.residues})
    rdfs = {f"{a}-{b}": rdf(centres, f"resname {a}", f"resname {b}", r_max, bin_width)
            for i, a in enumerate(names) for b in names[i:]}
    rdfs["all"] = rdf(centres, "all", None, r_max, bin_width)
    return rdfs


def production(traj, equilibration_ps: float):
    """The frames of ``traj`` after ``equilibration_ps``; an error if fewer than 5 remain."""
    frames = traj[traj.time > equilibration_ps + 1e-9]
    if frames.n_frames < 5:
        raise SystemExit(f"only {frames.n_frames} frames after {equilibration_ps} ps of equilibration "
                         f"(of {traj.n_frames}, up to {traj.time[-1]:.3f} ps): run longer or save frames more often")
    return frames


def plot(traj, rho, equilibration_ps, rdfs, reference, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(traj.time, rho, lw=0.8)
    left.axhline(EXPERIMENT_G_PER_ML, color="k", ls="--", lw=0.8, label=f"experiment {EXPERIMENT_G_PER_ML}")
    left.axvline(equilibration_ps, color="grey", ls=":", lw=0.8, label="end of equilibration")
    left.set(xlabel="time (ps)", ylabel="density (g/mL)")
    left.legend(fontsize=8)
    for label, (r, g) in rdfs.items():
        line, = right.plot(r, g, lw=1, label=f"{label} model")
        if reference and label in reference:
            right.plot(*reference[label], lw=1, ls="--", color=line.get_color(), label=f"{label} reference")
    right.set(xlabel="r (nm)", ylabel="g(r), molecule centres")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=os.path.join(ROOT, "example_systems", "ecemc.pdb"))
    parser.add_argument("--model", default="carbonates-xtb", help="shipped model name or model file")
    parser.add_argument("--temperature", type=float, default=298.0, help="K")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--barostat-interval", type=int, default=25, help="steps between volume moves")
    parser.add_argument("--equilibration-ps", type=float, default=10.0)
    parser.add_argument("--production-ps", type=float, default=50.0)
    parser.add_argument("--frame-ps", type=float, default=0.1, help="time between saved frames")
    parser.add_argument("--blocks", type=int, default=5, help="blocks of the density's standard error")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bin-width", type=float, default=0.01, help="nm, RDF bins")
    parser.add_argument("--reference", help="trajectory of reference-level frames for the RDFs")
    parser.add_argument("--reference-top", help="its topology (with bonds), e.g. a PDB")
    parser.add_argument("--run-dir", help="the MD's directory (default benchmarks/runs/npt_density/<model>)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "npt_density.json"))
    args = parser.parse_args(argv)
    if args.reference and not args.reference_top:
        parser.error("--reference needs --reference-top")
    interval = max(1, round(1000.0 * args.frame_ps / args.timestep))
    steps = round(1000.0 * (args.equilibration_ps + args.production_ps) / args.timestep)
    run_dir = args.run_dir or os.path.join(HERE, "runs", "npt_density", os.path.basename(args.model))
    t0 = time.time()
    simulate([args.input], output=run_dir, model=args.model, grains="residue", ensemble="NPT",
             temperature=args.temperature, timestep=args.timestep, friction=args.friction, pressure=args.pressure,
             barostat_interval=args.barostat_interval, steps=steps, platform=args.platform, threads=args.threads,
             minimize=0, report=max(interval, steps // 20), trajectory_interval=interval,
             checkpoint_interval=interval * 10, seed=args.seed)
    wall = time.time() - t0

    traj = load_trajectory(os.path.join(run_dir, "trajectory.dcd"))
    rho = density(traj)
    frames = production(traj, args.equilibration_ps)
    mean, stderr = block_average(density(frames), args.blocks)
    r_max = 0.5 * float(np.min(frames.unitcell_lengths)) * 0.95
    rdfs = com_rdfs(frames, r_max, args.bin_width)
    reference, rdf_rms = None, None
    if args.reference:
        ref = load_trajectory(args.reference, args.reference_top)
        reference = com_rdfs(ref, min(r_max, 0.5 * float(np.min(ref.unitcell_lengths)) * 0.95), args.bin_width)
        rdf_rms = {label: float(np.sqrt(np.mean((g[:len(reference[label][1])] - reference[label][1]) ** 2)))
                   for label, (_, g) in rdfs.items() if label in reference}
    production_ps = float(frames.time[-1] - traj.time[traj.time <= args.equilibration_ps + 1e-9].max(initial=0.0))
    result = dict(
        model=args.model, input=os.path.relpath(args.input, ROOT), atoms=traj.n_atoms,
        temperature_K=args.temperature, pressure_bar=args.pressure, timestep_fs=args.timestep,
        barostat_interval=args.barostat_interval, equilibration_ps=args.equilibration_ps,
        production_ps=production_ps, production_frames=frames.n_frames, blocks=args.blocks,
        density_g_per_mL=mean, stderr_g_per_mL=stderr, experiment_g_per_mL=EXPERIMENT_G_PER_ML,
        relative_error=mean / EXPERIMENT_G_PER_ML - 1.0,
        within_5_percent=bool(abs(mean / EXPERIMENT_G_PER_ML - 1.0) <= 0.05),
        start_density_g_per_mL=float(rho[0]), rdf_peaks_nm={k: float(r[np.argmax(g)]) for k, (r, g) in rdfs.items()},
        reference=args.reference, rdf_rms_difference=rdf_rms, run_dir=os.path.relpath(run_dir, ROOT),
        wall_s_this_call=wall, machine=machine(), command="python benchmarks/npt_density.py",
        measured=time.strftime("%F %T"))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    plot(traj, rho, args.equilibration_ps, rdfs, reference, os.path.splitext(args.output)[0] + ".png")
    print(f"{args.model}: {mean:.3f} ± {stderr:.3f} g/mL over {production_ps:.1f} ps of production "
          f"({frames.n_frames} frames); experiment {EXPERIMENT_G_PER_ML} g/mL ({100 * result['relative_error']:+.1f} %)")
    return result


if __name__ == "__main__":
    main()
