"""α-RDX relaxed with GFN2-xTB (tblite) with its Pbca symmetry held: the cell the models must reproduce.

    python example_systems/relax_rdx.py [--fmax 0.01] [--output example_systems/rdx-gfn2.json]
    python example_systems/relax_rdx.py --calculator model --model rdx-xtb --output benchmarks/results/rdx_relaxed/rdx-xtb.json

The variables are the three cell lengths and the fractional coordinates of the 21 atoms of the
asymmetric unit; the eight Pbca operations (``build_rdx.PBCA``) make the 168 atoms of the cell from
them, each molecule kept whole. The energy is GFN2-xTB's of the periodic cell (tblite through ASE,
Ewald sums), and its gradient follows by the chain rule: an asymmetric atom's coordinate gets the
forces of its eight images, each turned back by its operation, and a cell length L gets V σ_LL / L
(σ the stress, ASE's sign: at fixed fractional coordinates dE/dε = V σ). So the symmetry holds
exactly, without a symmetry library, and the relaxation is that of the space group. L-BFGS-B
(scipy) runs on lengths in Å (fractions times the starting lengths) until the largest
(symmetrised) atomic force is below ``--fmax`` eV/Å and every diagonal stress below ``--smax`` GPa.

Every evaluation is written to ``--output`` (JSON: the current and best points, the history of
energy, largest force, stresses, cell and asymmetric-unit coordinates, from which any point of
the path can be rebuilt and labelled), and a run started again continues from the best point
(L-BFGS-B restarts its memory there). Writes, beside the JSON, the relaxed cell as a PDB (one
residue RDX per molecule, CONECT, CRYST1). Units: Å, eV, GPa. One evaluation of the 168-atom
cell takes 6-8 s of one core.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from build_rdx import CELL, PBCA, read_asymmetric_unit  # noqa: E402

GPA_PER_EV_PER_A3 = 160.21766208


class PbcaCell:
    """The α-RDX cell as a function of its Pbca variables: 3 lengths (Å) and 21 x 3 fractions."""

    def __init__(self, elements, fractional: np.ndarray):
        self.elements = list(elements) * len(PBCA)
        self.rotations = np.array([r for r, _ in PBCA], dtype=float)          # (8, 3) diagonal
        translations = np.array([t for _, t in PBCA], dtype=float)
        images = fractional[None] * self.rotations[:, None] + translations[:, None]
        # each molecule whole, its centre in the cell: integer shifts fixed at the start
        self.offsets = translations - np.floor(images.mean(1))                # (8, 3)

    def fractional(self, asymmetric: np.ndarray) -> np.ndarray:
        """Fractional coordinates (168, 3) of the cell, molecule by molecule."""
        return (asymmetric[None] * self.rotations[:, None] + self.offsets[:, None]).reshape(-1, 3)

    def atoms(self, lengths: np.ndarray, asymmetric: np.ndarray):
        """ASE Atoms of the periodic cell, with a ``molID`` per molecule: the grains stay the
        molecules however far a calculator's search distorts them (bond perception would not)."""
        from ase import Atoms
        atoms = Atoms(self.elements, scaled_positions=self.fractional(asymmetric), cell=np.diag(lengths), pbc=True)
        atoms.arrays["molID"] = np.repeat(np.arange(len(PBCA)), len(self.elements) // len(PBCA))
        return atoms

    def gradient(self, lengths: np.ndarray, forces: np.ndarray, stress: np.ndarray) -> tuple:
        """dE/dL (3,) and dE/d(asymmetric fractions) (21, 3) from the cell's forces (eV/Å) and
        stress (3x3, eV/Å^3, ASE's sign)."""
        volume = float(np.prod(lengths))
        d_lengths = volume * np.diag(stress) / lengths
        per_image = -forces.reshape(len(PBCA), -1, 3) * self.rotations[:, None] * lengths
        return d_lengths, per_image.sum(0)

    def symmetric_forces(self, lengths: np.ndarray, forces: np.ndarray) -> np.ndarray:
        """The forces (eV/Å) of the asymmetric atoms that the symmetric relaxation sees: the mean of
        their eight images turned back (what is left of the force once symmetry is imposed)."""
        return (forces.reshape(len(PBCA), -1, 3) * self.rotations[:, None]).mean(0)


def tblite_calculator():
    from tblite.ase import TBLite
    return TBLite(method="GFN2-xTB", accuracy=1.0, electronic_temperature=300.0, verbosity=0)


def relax(cell: PbcaCell, lengths: np.ndarray, asymmetric: np.ndarray, calculator, fmax: float, smax: float,
          max_evaluations: int, record: dict, save) -> dict:
    """L-BFGS-B on (lengths, fractions x starting lengths); returns ``record`` with the best point."""
    from scipy.optimize import minimize
    scale = np.concatenate([np.ones(3), np.tile(lengths, len(asymmetric))])
    x0 = np.concatenate([lengths, asymmetric.ravel()]) * scale

    class Converged(Exception):
        pass

    def energy_and_gradient(x):
        values = x / scale
        current_lengths, current_asymmetric = values[:3], values[3:].reshape(-1, 3)
        atoms = cell.atoms(current_lengths, current_asymmetric)
        atoms.calc = calculator
        start = time.perf_counter()
        energy = atoms.get_potential_energy()
        forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
        d_lengths, d_asymmetric = cell.gradient(current_lengths, forces, stress)
        force = float(np.linalg.norm(cell.symmetric_forces(current_lengths, forces), axis=1).max())
        stresses = (np.diag(stress) * GPA_PER_EV_PER_A3).tolist()
        step = dict(energy_eV=float(energy), max_force_eV_per_A=force, stress_GPa=stresses,
                    pressure_GPa=-sum(stresses) / 3, cell_A=current_lengths.tolist(),
                    seconds=time.perf_counter() - start,
                    asymmetric_fractional=np.round(current_asymmetric, 6).tolist())
        record["history"].append(step)
        if record.get("best") is None or energy < record["best"]["energy_eV"]:
            record["best"] = dict(step, asymmetric_fractional=current_asymmetric.tolist())
        save(record)
        print(f"{len(record['history']):4d}  E {energy:.5f} eV  fmax {force:.4f} eV/Å  "
              f"σ {' '.join(f'{s:+.3f}' for s in stresses)} GPa  cell {' '.join(f'{v:.4f}' for v in current_lengths)} Å",
              flush=True)
        if force < fmax and max(abs(s) for s in stresses) < smax:
            raise Converged
        gradient = np.concatenate([d_lengths, d_asymmetric.ravel()]) / scale
        return float(energy), gradient

    try:
        result = minimize(energy_and_gradient, x0, jac=True, method="L-BFGS-B",
                          options=dict(maxfun=max_evaluations, maxiter=max_evaluations, gtol=1e-8, ftol=1e-12))
        record["status"] = f"stopped: {result.message}"
    except Converged:
        record["status"] = "converged"
    save(record)
    return record


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å, largest symmetrised atomic force")
    parser.add_argument("--smax", type=float, default=0.02, help="GPa, largest diagonal stress")
    parser.add_argument("--max-evaluations", type=int, default=300)
    parser.add_argument("--output", default=os.path.join(HERE, "rdx-gfn2.json"))
    parser.add_argument("--calculator", default="gfn2", choices=["gfn2", "model", "lj"],
                        help="model: a CGAA model (--model) through training.calculator; "
                             "lj: a Lennard-Jones stand-in, for testing the script")
    parser.add_argument("--model", default="rdx-xtb", help="with --calculator model: model file or shipped name")
    args = parser.parse_args(argv)
    labels, elements, fractional = read_asymmetric_unit()
    cell = PbcaCell(elements, fractional)
    if args.calculator == "gfn2":
        calculator, method = tblite_calculator(), "GFN2-xTB (tblite), accuracy 1, electronic temperature 300 K"
    elif args.calculator == "model":
        sys.path.insert(0, os.path.dirname(HERE))
        from training.calculator import CGAACalculator
        calculator, method = CGAACalculator(args.model), f"CGAA model {os.path.basename(args.model)} (float64)"
    else:
        from ase.calculators.lj import LennardJones
        calculator, method = LennardJones(sigma=1.2, epsilon=0.01, rc=5.0, smooth=True), "Lennard-Jones stand-in"
    record = dict(method=method, experiment=dict(cell_A=list(CELL), source="Choi & Prince, Acta Cryst. B28 (1972) 2857"),
                  fmax=args.fmax, smax=args.smax, history=[], best=None)
    lengths, asymmetric = np.array(CELL), fractional
    if os.path.exists(args.output):
        with open(args.output) as file:
            saved = json.load(file)
        if saved.get("method") != method:
            raise SystemExit(f"{args.output} holds a relaxation with {saved.get('method')}: choose another --output")
        record = saved
        if saved.get("best"):
            lengths, asymmetric = np.array(saved["best"]["cell_A"]), np.array(saved["best"]["asymmetric_fractional"])

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    def save(data):
        temporary = args.output + ".tmp"
        with open(temporary, "w") as file:
            json.dump(data, file, indent=1)
        os.replace(temporary, args.output)

    relax(cell, lengths, asymmetric, calculator, args.fmax, args.smax, args.max_evaluations, record, save)
    best = record["best"]
    volume_change = np.prod(best["cell_A"]) / np.prod(CELL) - 1
    record["summary"] = dict(cell_A=best["cell_A"], volume_change_vs_experiment=float(volume_change),
                             pressure_at_experimental_cell_GPa=record["history"][0]["pressure_GPa"]
                             if record["history"][0]["cell_A"] == list(CELL) else None,
                             evaluations=len(record["history"]))
    save(record)
    stem = os.path.splitext(args.output)[0]
    write_pdb(cell, labels, elements, best, stem + ".pdb")
    write_pdb(cell, labels, elements, best, stem + "-2x2x2.pdb", (2, 2, 2))
    print(f"{record['status']}: a b c = {' '.join(f'{v:.3f}' for v in best['cell_A'])} Å, volume "
          f"{100 * volume_change:+.1f} % vs experiment")
    return record


def write_pdb(cell: PbcaCell, labels, elements, best: dict, path: str, repeats=(1, 1, 1)) -> None:
    """The relaxed cell, repeated ``repeats`` times along a, b, c, as build_rdx writes cells: one
    residue RDX per molecule, bonds, box."""
    from build_rdx import supercell_topology
    from openmm import app, unit
    lengths = np.array(best["cell_A"])
    xyz = (cell.fractional(np.array(best["asymmetric_fractional"])) * lengths).reshape(len(PBCA), -1, 3)
    topology, positions = supercell_topology(labels, elements, xyz, repeats, lengths)
    with open(path, "w") as file:
        print("REMARK   1 ALPHA-RDX RELAXED WITH GFN2-XTB, PBCA HELD (EXAMPLE_SYSTEMS/RELAX_RDX.PY)", file=file)
        app.PDBFile.writeFile(topology, positions * unit.angstrom, file, keepIds=False)


if __name__ == "__main__":
    main()
