"""Ramachandran plots (φ/ψ of every residue with both) of peptide trajectories, side by side.

    python benchmarks/peptides/ramachandran.py RUN_DIR [RUN_DIR ...] --output docs/figures/x.png

Each RUN_DIR holds ``trajectory.dcd`` and ``topology.pdb`` (as ``mlmm.py`` writes them); its
panel is titled by ``summary.json``'s model (or ``--titles``). Angles come from mdtraj
(``compute_phi``, ``compute_psi``), in degrees. Also prints the fraction of frames in the
αR (φ < 0, -120° < ψ < 50°) and β/PPII (φ < 0, ψ > 50° or ψ < -120°) basins.
"""
import argparse
import json
import os

import matplotlib
import mdtraj
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def angles(run_dir: str):
    trajectory = mdtraj.load(os.path.join(run_dir, "trajectory.dcd"), top=os.path.join(run_dir, "topology.pdb"))
    _, phi = mdtraj.compute_phi(trajectory)
    _, psi = mdtraj.compute_psi(trajectory)
    return np.degrees(phi).ravel(), np.degrees(psi).ravel()


def basins(phi, psi):
    alpha = (phi < 0) & (psi > -120) & (psi < 50)
    beta = (phi < 0) & ((psi >= 50) | (psi <= -120))
    return dict(alpha_R=round(float(alpha.mean()), 3), beta_PPII=round(float(beta.mean()), 3),
                phi_positive=round(float((phi >= 0).mean()), 3))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--titles", nargs="+")
    parser.add_argument("--output", required=True, help="PNG")
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.runs), figsize=(4.2 * len(args.runs), 4.2), squeeze=False)
    for k, (run, ax) in enumerate(zip(args.runs, axes[0])):
        phi, psi = angles(run)
        title = args.titles[k] if args.titles else os.path.basename(os.path.normpath(run))
        summary = os.path.join(run, "summary.json")
        if os.path.exists(summary) and not args.titles:
            title = json.load(open(summary))["model"]
        ax.hist2d(phi, psi, bins=72, range=[[-180, 180], [-180, 180]], cmap="Blues", cmin=1)
        ax.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="φ (°)", ylabel="ψ (°)",
               title=f"{title}\n{len(phi)} frames", xticks=range(-180, 181, 90), yticks=range(-180, 181, 90))
        ax.set_aspect("equal")
        print(json.dumps(dict(run=run, frames=len(phi), **basins(phi, psi))))
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)


if __name__ == "__main__":
    main()
