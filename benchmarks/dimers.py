"""Interaction energies of first-shell molecule pairs cut from a liquid run: GFN2-xTB vs models.

A per-atom energy RMSE of a few meV/atom can hide a systematic error in how strongly two
molecules bind: 100 meV per 20-atom pair is 5 meV/atom, yet summed over a liquid's neighbours it
decides the density. For random frames (after ``--skip``) this takes molecule pairs whose centres
are closer than ``--radius`` Å (minimum image), up to ``--per-kind`` pairs per pair of residue
names, labels each pair and both molecules alone with tblite (cached in
``OUTPUT/pairs-xtb.xyz``) and compares the interaction energy E(AB) - E(A) - E(B) (meV) of xTB
with each model's. Writes ``OUTPUT/dimers.json``.

Usage::

    python benchmarks/dimers.py RUN/topology.pdb RUN/trajectory.dcd --model carbonates-xtb \
        --skip 40 --output benchmarks/results/dimers
"""
import argparse
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def first_shell_pairs(topology_file: str, trajectory: str, radius: float, per_kind: int, skip: int, seed: int):
    """ase.Atoms for each chosen pair (``-d``) and its two molecules (``-a``, ``-b``), pair kind in info."""
    from ase import Atoms

    from training.datagen.clusters import load_liquid, minimum_image
    traj, molecule = load_liquid(topology_file, trajectory, skip)
    members = [np.flatnonzero(molecule == label) for label in range(int(molecule.max()) + 1)]
    atoms_list = list(traj.topology.atoms)
    names = [atoms_list[rows[0]].residue.name for rows in members]
    numbers = np.array([a.element.atomic_number for a in atoms_list])
    found = {}
    for f in range(traj.n_frames):
        box, xyz = 10 * traj.unitcell_vectors[f], 10 * traj.xyz[f]
        whole = [(rows, xyz[rows[0]] + minimum_image(xyz[rows] - xyz[rows[0]], box)) for rows in members]
        centres = np.array([p.mean(0) for _, p in whole])
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                delta = minimum_image(centres[j] - centres[i], box)
                if np.linalg.norm(delta) < radius:
                    kind = "-".join(sorted((names[i], names[j])))
                    moved = whole[j][1] + (centres[i] + delta - centres[j])
                    found.setdefault(kind, []).append((f + skip, whole[i], (whole[j][0], moved)))
    rng = np.random.default_rng(seed)
    frames = []
    for kind, pairs in sorted(found.items()):
        for k in rng.permutation(len(pairs))[:per_kind]:
            f, (rows_a, xyz_a), (rows_b, xyz_b) = pairs[k]
            base = f"{kind}-f{f}-{k}"
            for part, rows, xyz in (("d", np.r_[rows_a, rows_b], np.r_[xyz_a, xyz_b]),
                                    ("a", rows_a, xyz_a), ("b", rows_b, xyz_b)):
                atoms = Atoms(numbers=numbers[rows], positions=xyz)
                atoms.arrays["molID"] = (np.r_[np.zeros(len(rows_a)), np.ones(len(rows_b))] if part == "d"
                                         else np.zeros(len(rows))).astype(int)
                atoms.info.update(label_id=f"{base}-{part}", kind=kind, pair=base,
                                  distance=float(np.linalg.norm(xyz_b.mean(0) - xyz_a.mean(0))))
                frames.append(atoms)
    return frames


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topology", help="PDB with bonds and box (e.g. topology.pdb written by simulate)")
    parser.add_argument("trajectory", help="DCD or other mdtraj trajectory of the liquid")
    parser.add_argument("--model", action="append", required=True, help="model file or name (repeatable)")
    parser.add_argument("--radius", type=float, default=5.0, help="Å between molecule centres")
    parser.add_argument("--per-kind", type=int, default=12, help="pairs per pair of residue names")
    parser.add_argument("--skip", type=int, default=0, help="leading frames not used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="tblite processes")
    parser.add_argument("--output", required=True, help="output directory")
    args = parser.parse_args(argv)

    from ase.io import read

    from density_errors import molecule_energies
    from common import save_results
    from training.datagen.label import label
    frames = first_shell_pairs(args.topology, args.trajectory, args.radius, args.per_kind, args.skip, args.seed)
    os.makedirs(args.output, exist_ok=True)
    cache = os.path.join(args.output, "pairs-xtb.xyz")
    label(frames, cache, workers=args.workers)
    labelled = read(cache, index=":")
    ids = [a.info["label_id"] for a in labelled]
    reference = dict(zip(ids, (a.info["energy_xtb"] for a in labelled)))
    pairs = sorted({a.info["pair"] for a in labelled
                    if all(f"{a.info['pair']}-{p}" in reference for p in "dab")})
    kind = {a.info["pair"]: a.info["kind"] for a in labelled}

    def interaction(energy):
        return np.array([energy[f"{p}-d"] - energy[f"{p}-a"] - energy[f"{p}-b"] for p in pairs]) * 1000

    xtb = interaction(reference)
    results = {"trajectory": args.trajectory, "radius_A": args.radius, "pairs": pairs,
               "kinds": [kind[p] for p in pairs], "xtb_interaction_meV": xtb.tolist(), "models": {}}
    kinds = sorted(set(results["kinds"]))
    for name in args.model:
        model = interaction(dict(zip(ids, molecule_energies(name, cache))))
        error = model - xtb
        summary = {}
        for k in kinds:
            rows = np.array(results["kinds"]) == k
            summary[k] = {"n": int(rows.sum()), "xtb_mean": float(xtb[rows].mean()),
                          "model_mean": float(model[rows].mean()), "error_mean": float(error[rows].mean()),
                          "error_std": float(error[rows].std())}
            print(f"{name} {k}: n={rows.sum()} xTB {xtb[rows].mean():+.0f}, model {model[rows].mean():+.0f}, "
                  f"error {error[rows].mean():+.0f} ± {error[rows].std():.0f} meV")
        results["models"][name] = {"interaction_meV": model.tolist(), "by_kind": summary}
    save_results(args.output, "dimers", results)


if __name__ == "__main__":
    main()
