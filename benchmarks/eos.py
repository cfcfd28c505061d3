"""Equation of state of a liquid box: GFN2-xTB vs CGAA models under barostat-like volume moves.

For each of ``--frames`` frames of a periodic liquid trajectory, the molecules' centres and the
box are scaled rigidly by each of ``--scales`` (the move a ``MonteCarloBarostat`` makes; see
``training/datagen/boxes.py``). Every scaled box is labelled with periodic GFN2-xTB (tblite; resumable,
cached in ``OUTPUT/eos-xtb.xyz``) and evaluated with each model through OpenMM (residue grains,
the deployed TorchForce). The energy change with volume is what decides the barostat's moves, so
a model with the wrong E(V) slope settles at the wrong density.

Writes ``OUTPUT/eos.json`` (per frame and scale: density g/mL, xTB and model energies in eV,
and per model the RMSE of E(s) - E(1) in meV/molecule) and ``OUTPUT/eos.png``. With scales 0.99
and 1.01 it also gives each frame's configurational pressure, -dE/dV by central difference in
bar (the virial of rigid molecules; the ideal-gas term N_molecules kT/V, the same for every
model, is left out), for xTB and each model: a model whose pressure is right at every density
has the right NPT density.

Usage::

    python benchmarks/eos.py RUN/topology.pdb RUN/trajectory.dcd --model carbonates-xtb \
        --frames 3 --output benchmarks/results/eos
"""
import argparse
import os
import sys

import numpy as np

from common import AVOGADRO, model_energies, pressure, save_results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topology", help="PDB with bonds and box (e.g. topology.pdb written by simulate)")
    parser.add_argument("trajectory", help="DCD or other mdtraj trajectory of the liquid")
    parser.add_argument("--model", action="append", required=True, help="model file or name (repeatable)")
    parser.add_argument("--frames", type=int, default=3, help="frames, evenly spaced over the trajectory")
    parser.add_argument("--skip", type=int, default=0, help="leading frames not used (equilibration)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.96, 0.98, 0.99, 1.0, 1.01, 1.02, 1.04, 1.07, 1.10],
                        help="length scale factors (1.0 is needed: energies are relative to it; with "
                             "0.99 and 1.01 the pressure is reported too)")
    parser.add_argument("--workers", type=int, default=2, help="tblite processes")
    parser.add_argument("--output", required=True, help="output directory")
    args = parser.parse_args(argv)
    if 1.0 not in args.scales:
        parser.error("--scales must include 1.0")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase import Atoms
    from ase.io import read

    from training.datagen.boxes import scale_molecules
    from training.datagen.clusters import load_liquid
    from training.datagen.label import label

    traj, molecule = load_liquid(args.topology, args.trajectory)
    numbers = np.array([a.element.atomic_number for a in traj.topology.atoms])
    mass = sum(a.element.mass for a in traj.topology.atoms)  # g/mol
    frames = np.linspace(args.skip, traj.n_frames - 1, args.frames).round().astype(int)
    boxes = []
    for f in frames:
        for s in args.scales:
            xyz, box = scale_molecules(10 * traj.xyz[f], molecule, 10 * traj.unitcell_vectors[f], s)
            atoms = Atoms(numbers=numbers, positions=xyz, cell=box, pbc=True)
            atoms.info.update(label_id=f"frame{f}-scale{s:.4f}", frame=int(f), scale=s)
            boxes.append(atoms)
    os.makedirs(args.output, exist_ok=True)
    cache = os.path.join(args.output, "eos-xtb.xyz")
    label(boxes, cache, workers=args.workers)
    xtb = {a.info["label_id"]: a.info["energy_xtb"] for a in read(cache, index=":")}
    missing = [b.info["label_id"] for b in boxes if b.info["label_id"] not in xtb]
    if missing:
        sys.exit(f"xTB failed for {missing} (see {cache}.json)")
    e_xtb = np.array([xtb[b.info["label_id"]] for b in boxes]).reshape(len(frames), len(args.scales))
    density = np.array([mass / AVOGADRO / abs(np.linalg.det(b.cell)) * 1e24 for b in boxes]
                       ).reshape(len(frames), len(args.scales))
    volume = np.array([abs(np.linalg.det(b.cell)) for b in boxes]).reshape(len(frames), len(args.scales))
    ref = args.scales.index(1.0)
    n_mol = int(molecule.max()) + 1
    rel_xtb = (e_xtb - e_xtb[:, ref:ref + 1]) / n_mol * 1000  # meV/molecule
    results = {"topology": args.topology, "trajectory": args.trajectory, "frames": frames.tolist(),
               "scales": args.scales, "molecules": n_mol, "density_g_per_ml": density.tolist(),
               "xtb_energy_eV": e_xtb.tolist(), "models": {}}
    p_xtb = pressure(e_xtb, volume, args.scales)
    if p_xtb is not None:
        results["xtb_pressure_bar"] = p_xtb.tolist()
        print("xTB pressure (bar) per frame:", " ".join(f"{p:+.0f}" for p in p_xtb))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(density.T, rel_xtb.T, "k-o", ms=3, lw=1)
    ax.plot([], [], "k-o", ms=3, label="GFN2-xTB")
    for name, colour in zip(args.model, ["C0", "C1", "C2", "C3", "C4"]):
        e_model = model_energies(name, args.topology, boxes).reshape(len(frames), len(args.scales))
        rel = (e_model - e_model[:, ref:ref + 1]) / n_mol * 1000
        rmse = float(np.sqrt(np.mean((rel - rel_xtb) ** 2)))
        results["models"][name] = {"energy_eV": e_model.tolist(), "relative_rmse_meV_per_molecule": rmse}
        print(f"{name}: E(s) - E(1) RMSE vs xTB {rmse:.1f} meV/molecule")
        p_model = pressure(e_model, volume, args.scales)
        if p_model is not None:
            results["models"][name]["pressure_bar"] = p_model.tolist()
            print(f"{name}: pressure (bar) per frame:", " ".join(f"{p:+.0f}" for p in p_model))
        ax.plot(density.T, rel.T, "--", color=colour, lw=1)
        ax.plot([], [], "--", color=colour, label=os.path.basename(name))
    ax.set_xlabel("density (g/mL)")
    ax.set_ylabel("E - E(frame) (meV/molecule)")
    ax.legend(fontsize=8)
    save_results(args.output, "eos", results, fig)


if __name__ == "__main__":
    main()
