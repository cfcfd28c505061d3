"""α-RDX results (issue 31): held-out errors of RDX models and the lattice constants, in
``results/rdx.json``.

    python benchmarks/rdx.py --model training/runs/rdx-xtb-v2.pt [--model OTHER ...] [--relax]

Every ``--model`` (file or shipped name) is evaluated on the held-out sets that exist (never
trained on): ``training/datasets/rdx-crystal-heldout.xyz.xz`` (crystal cells at 450 K) and
``rdx-disordered-heldout.xyz.xz`` (the disordered phase), with the training path
(``training.evaluate.evaluate_file``); its row in ``models`` is replaced, others are kept. The
top-level ``force_rmse_crystal`` / ``force_rmse_disordered`` are those of the last ``--model``.
``lattice_gfn2_A`` is the Pbca-held GFN2-xTB relaxation (``example_systems/rdx-gfn2.json``),
``lattice_experiment_A`` Choi & Prince's 295 K cell. With ``--relax`` each model also relaxes the cell
with Pbca held (``example_systems/relax_rdx.py``, JSON and PDB in ``results/rdx_relaxed/``): its 0 K
cell goes into its row as ``relaxed``, to set beside GFN2-xTB's. Keys whose runs have not been made yet
(the model's NPT lattice, MACE medium) are null. Units: eV/Å, meV/atom, kbar, Å, ps.
"""
import argparse
import json
import os
import sys

from common import HERE, ROOT, machine

sys.path.insert(0, os.path.join(ROOT, "example_systems"))
DATASETS = os.path.join(ROOT, "training", "datasets")
HELD_OUT = {"crystal": os.path.join(DATASETS, "rdx-crystal-heldout.xyz.xz"),
            "disordered": os.path.join(DATASETS, "rdx-disordered-heldout.xyz.xz")}
OUTPUT = os.path.join(HERE, "results", "rdx.json")
#: Result keys of the issue, null until their runs exist.
PENDING = ("mace_medium_force_rmse", "speedup_vs_mace_medium", "lattice_model_A", "production_ps")


def held_out_errors(model: str, held_out: dict) -> dict:
    """Errors of ``model`` on every held-out set that exists (None for the others)."""
    from cgaa_openmm.potential import resolve_model_path
    from training.evaluate import evaluate_file
    path = resolve_model_path(model)
    return {phase: (evaluate_file(path, data) if os.path.exists(data) else None) for phase, data in held_out.items()}


def relaxed_cell(model: str, folder: str, evaluations: int) -> dict:
    """The model's own Pbca-held relaxation from the experimental cell (``relax_rdx.py`` with the
    model as calculator; its JSON and PDB in ``folder``): the cell (Å) it ends at and whether it
    converged. GFN2-xTB's is 12.99 / 11.01 / 10.67 Å; rdx-xtb v2 ran away to a = 20 Å."""
    from relax_rdx import main as relax
    name = os.path.basename(model).removesuffix(".pt")
    record = relax(["--calculator", "model", "--model", model, "--max-evaluations", str(evaluations),
                    "--output", os.path.join(folder, f"{name}.json")])
    return dict(cell_A=[round(v, 4) for v in record["best"]["cell_A"]], status=record["status"],
                evaluations=len(record["history"]), energy_eV=record["best"]["energy_eV"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="model file or shipped name")
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--relax", action="store_true",
                        help="also relax the cell with each model (Pbca held): its 0 K cell against GFN2-xTB's")
    parser.add_argument("--relax-evaluations", type=int, default=300)
    args = parser.parse_args(argv)
    from build_rdx import CELL
    results = {}
    if os.path.exists(args.output):
        with open(args.output) as file:
            results = json.load(file)
    with open(os.path.join(ROOT, "example_systems", "rdx-gfn2.json")) as file:
        relaxed = json.load(file)["best"]["cell_A"]
    models = results.get("models", {})
    for model in args.model:
        row = held_out_errors(model, HELD_OUT)
        if args.relax:
            row["relaxed"] = relaxed_cell(model, os.path.join(os.path.dirname(args.output), "rdx_relaxed"),
                                          args.relax_evaluations)
        elif "relaxed" in models.get(os.path.basename(model), {}):
            row["relaxed"] = models[os.path.basename(model)]["relaxed"]
        models[os.path.basename(model)] = row
    last = models[os.path.basename(args.model[-1])]
    results.update(
        model=os.path.basename(args.model[-1]),
        force_rmse_crystal=last["crystal"]["forces_rmse"] if last["crystal"] else None,
        force_rmse_disordered=last["disordered"]["forces_rmse"] if last["disordered"] else None,
        lattice_gfn2_A=[round(v, 4) for v in relaxed], lattice_experiment_A=list(CELL),
        held_out={phase: os.path.relpath(path, ROOT) for phase, path in HELD_OUT.items()},
        models=models, machine=machine())
    for key in PENDING:
        results.setdefault(key, None)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(results, file, indent=1)
    for name, row in models.items():
        print(name, {phase: None if row[phase] is None else round(row[phase]["forces_rmse"], 4) for phase in HELD_OUT},
              "relaxed cell", row.get("relaxed", {}).get("cell_A"))
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
