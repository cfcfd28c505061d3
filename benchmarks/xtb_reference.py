"""The reference level checked: tblite's periodic GFN2-xTB energy and stress against non-periodic routes.

    python benchmarks/xtb_reference.py [--boxes npt5-28 npt5-16] [--molecules 10 15 20 30 40] [--output benchmarks/results]

For periodic EC/EMC boxes of ``training/datasets/ecemc-boxes-heldout.xyz.xz`` (every molecule
neutral, singlet; tblite, GFN2-xTB, 300 K electronic temperature):

1. Stress: the molecular virial pressure from tblite's stress and forces (the atomic virial
   pressure -tr(stress)/3 minus sum_j (r_j - R_J) . F_j / 3V, r_j unwrapped, R_J the mean
   position of molecule J's atoms) against -dE/dV from a central difference of the box scaled by
   1 +- each of ``--steps`` with every molecule moved rigidly (centres scaled, shapes kept); and the
   atomic virial pressure against -dE/dV of the box scaled with all atoms (cell and positions).
2. Cohesive energy: (E_box - sum_J E_isolated(J)) / N_mol, each molecule computed alone at its
   geometry in the box, against the binding energy per molecule (E_cluster - sum_J E_isolated(J)) / N
   of spherical clusters of the N whole molecules (periodic images included) nearest a molecule's
   centre, extrapolated to bulk linearly in N^(-1/3). A vacuum cluster lacks the conducting
   (tin-foil) boundary of the Ewald sum; the energy of its net dipole M, 2 pi M^2 / 3V per cluster
   (V = N x the box's volume per molecule), is reported as the size of that difference. The same
   molecules compared directly: each molecule's binding from tblite's atom-resolved energies, in the
   cluster and in the periodic box, averaged over the molecules at least ``--inner`` Å inside the
   cluster's radius.
3. The same cluster periodic and not: a cluster's periodic energy, centred in cubic cells of edge
   (its largest extent + each of ``--paddings``) Å, minus its non-periodic energy, fitted as A + C/V.
   Only the dipole term above (tin-foil boundary: -2 pi M^2 / 3V) should remain.

Writes ``OUTPUT/xtb_reference.json`` with the timing of every tblite call. Units: Å, eV (energies
also kJ/mol per molecule), kbar, g/mL, s.
"""
import argparse
import os
import time
from importlib.metadata import version

import numpy as np
from ase import Atoms
from ase.io import read
from ase.units import Bohr, Hartree

from common import AVOGADRO, BAR_PER_EV_PER_A3, KJ_PER_EV, ROOT, machine, save_results
from dispersion_tail import rigidly_scaled

DATA = os.path.join(ROOT, "training", "datasets", "ecemc-boxes-heldout.xyz.xz")
#: e^2/Å in eV (Coulomb's constant).
COULOMB = Hartree * Bohr
DEBYE_IN_E_A = 0.20819434


def settings(accuracy: float = 1.0, max_iterations: int = 250) -> dict:
    """tblite settings of every call (``electronic_temperature`` K)."""
    return dict(method="GFN2-xTB", accuracy=accuracy, max_iterations=max_iterations, electronic_temperature=300.0)


def single_point(numbers, positions, cell, options: dict) -> dict:
    """tblite energy (eV), atom energies (eV), forces (eV/Å), dipole (e Å; clusters) and, for a periodic
    ``cell`` (3x3 Å, None for a cluster), stress (3x3, eV/Å^3, (1/V) dE/dstrain); ``seconds`` of the call.
    A fresh calculator each call: no wavefunction carried over from the previous geometry."""
    from tblite.ase import TBLite
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=cell is not None)
    atoms.calc = TBLite(charge=0.0, multiplicity=1, verbosity=0, **options)
    start = time.perf_counter()
    out = dict(energy=atoms.get_potential_energy(), energies=atoms.get_potential_energies(), forces=atoms.get_forces())
    if cell is None:
        out["dipole"] = atoms.get_dipole_moment()
    else:
        out["stress"] = atoms.get_stress(voigt=False)
    out["seconds"] = time.perf_counter() - start
    return out


def whole_molecules(atoms) -> np.ndarray:
    """Positions (Å) with every molecule (``molID``) made whole across the cell: each atom is
    placed at the minimum image of a bonded atom already placed (bonds: 1.2 x covalent radii)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list
    molecule = atoms.arrays["molID"]
    first, second, vector = neighbor_list("ijD", atoms, natural_cutoffs(atoms, mult=1.2))
    positions = atoms.get_positions()
    placed = np.zeros(len(atoms), bool)
    for m in np.unique(molecule):
        members = np.flatnonzero(molecule == m)
        placed[members[0]] = True
        queue = [members[0]]
        while queue:
            i = queue.pop()
            for j, d in zip(second[first == i], vector[first == i]):
                if not placed[j]:
                    positions[j] = positions[i] + d
                    placed[j] = True
                    queue.append(j)
        if not placed[members].all():
            raise ValueError(f"molecule {m} is not bonded together")
    return positions


def centres(positions, molecule) -> np.ndarray:
    """Mean position (Å) of each molecule's atoms, in the order of ``np.unique(molecule)``."""
    return np.array([positions[molecule == m].mean(0) for m in np.unique(molecule)])


def virial_pressures(positions, molecule, forces, stress, volume) -> tuple:
    """Atomic and molecular virial pressures (kbar) from the stress (eV/Å^3) and forces (eV/Å) of
    a box with whole molecules (``positions`` unwrapped, Å)."""
    atomic = -np.trace(stress) / 3
    relative = positions - centres(positions, molecule)[np.searchsorted(np.unique(molecule), molecule)]
    molecular = atomic - (relative * forces).sum() / (3 * volume)
    return atomic * BAR_PER_EV_PER_A3 / 1e3, molecular * BAR_PER_EV_PER_A3 / 1e3


def scaling_pressure(numbers, positions, cell, molecule, step: float, options: dict, rigid: bool = True) -> dict:
    """-dE/dV (kbar) from tblite energies of the box scaled by 1 +- ``step``: molecules moved rigidly
    (``rigid``) or all atoms scaled; with the energies (eV) and timings (s) of the two calls."""
    calls = []
    for scale in (1 - step, 1 + step):
        if rigid:
            moved, box = rigidly_scaled(positions, cell, molecule, scale)
        else:
            moved, box = positions * scale, cell * scale
        result = single_point(numbers, moved, box, options)
        calls.append((abs(np.linalg.det(box)), result["energy"], result["seconds"]))
    (v_low, e_low, t_low), (v_high, e_high, t_high) = calls
    return dict(pressure_kbar=-(e_high - e_low) / (v_high - v_low) * BAR_PER_EV_PER_A3 / 1e3,
                energies_eV=[e_low, e_high], seconds=[t_low, t_high])


def isolated_energies(numbers, positions, molecule, options: dict) -> tuple:
    """Energy (eV) and call time (s) of each molecule alone (non-periodic) at its geometry."""
    energies, seconds = [], []
    for m in np.unique(molecule):
        result = single_point(numbers[molecule == m], positions[molecule == m], None, options)
        energies.append(result["energy"])
        seconds.append(result["seconds"])
    return np.array(energies), seconds


def cut_cluster(positions, cell, molecule, centre, n_molecules: int) -> tuple:
    """The ``n_molecules`` whole molecules (periodic images included) whose centres are nearest
    ``centre`` (Å). Returns the cluster's atom positions (Å), the box atom each one copies, the cluster
    molecule of each atom (0 .. n_molecules - 1), the box molecule (position in ``np.unique(molecule)``)
    of each cluster molecule, and each cluster molecule's centre distance (Å)."""
    labels = np.unique(molecule)
    own = centres(positions, molecule)
    reach = int(np.ceil(n_molecules / len(labels))) + 1
    grid = np.array([(a, b, c) for a in range(-reach, reach + 1) for b in range(-reach, reach + 1)
                     for c in range(-reach, reach + 1)])
    shifts = grid @ cell
    images = (own[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    distance = np.linalg.norm(images - centre, axis=1)
    chosen = np.argsort(distance, kind="stable")[:n_molecules]
    atoms, copies, owner, parents = [], [], [], []
    for index, k in enumerate(chosen):
        shift, parent = divmod(int(k), len(labels))
        members = np.flatnonzero(molecule == labels[parent])
        atoms.append(positions[members] + shifts[shift])
        copies.append(members)
        owner.append(np.full(len(members), index))
        parents.append(parent)
    return np.concatenate(atoms), np.concatenate(copies), np.concatenate(owner), np.array(parents), distance[chosen]


def bulk_fit(n_molecules, binding) -> dict:
    """Least-squares line binding = bulk + surface N^(-1/3) (eV/molecule); ``bulk`` with its
    standard error (None with two points)."""
    x = np.asarray(n_molecules, float) ** (-1 / 3)
    design = np.stack([np.ones_like(x), x], 1)
    coef, residual, _, _ = np.linalg.lstsq(design, np.asarray(binding), rcond=None)
    stderr = None
    if len(x) > 2:
        variance = float(residual[0]) / (len(x) - 2) if len(residual) else 0.0
        stderr = float(np.sqrt(variance * np.linalg.inv(design.T @ design)[0, 0]))
    return dict(bulk_eV=float(coef[0]), surface_eV=float(coef[1]), bulk_stderr_eV=stderr)


def vacuum_cell_offsets(numbers, cluster, energy: float, paddings, options: dict) -> dict:
    """Periodic energy of a cluster (Å) in cubic cells of edge (largest extent + padding) Å minus its
    non-periodic ``energy`` (eV), with the fit A + C/V (eV, eV Å^3) and call times (s)."""
    centred = cluster - (cluster.max(0) + cluster.min(0)) / 2
    rows = []
    for padding in paddings:
        edge = float(np.ptp(cluster, 0).max() + padding)
        result = single_point(numbers, centred + edge / 2, np.eye(3) * edge, options)
        rows.append(dict(padding_A=padding, edge_A=edge, volume_A3=edge ** 3, difference_eV=result["energy"] - energy,
                         seconds=result["seconds"]))
    design = np.stack([np.ones(len(rows)), [1 / r["volume_A3"] for r in rows]], 1)
    (offset, slope), *_ = np.linalg.lstsq(design, [r["difference_eV"] for r in rows], rcond=None)
    return dict(cells=rows, infinite_cell_eV=float(offset), per_inverse_volume_eV_A3=float(slope))


def check_box(atoms, args, options: dict) -> dict:
    """Both checks for one periodic box (see the module docstring)."""
    numbers, cell, molecule = atoms.numbers, np.asarray(atoms.cell), atoms.arrays["molID"]
    positions = whole_molecules(atoms)
    volume = abs(np.linalg.det(cell))
    n_mol = len(np.unique(molecule))
    row = dict(label_id=atoms.info.get("label_id"), atoms=len(atoms), molecules=n_mol,
               cell_A=[float(x) for x in atoms.cell.lengths()], volume_A3=volume,
               density_g_per_ml=float(atoms.get_masses().sum() / volume * 1e24 / AVOGADRO))
    box = single_point(numbers, positions, cell, options)
    atomic, molecular = virial_pressures(positions, molecule, box["forces"], box["stress"], volume)
    stored = atoms.info.get("energy_xtb")
    row.update(energy_eV=box["energy"], energy_minus_dataset_eV=None if stored is None else box["energy"] - stored,
               seconds_box=box["seconds"], stress_atomic_kbar=atomic, stress_molecular_kbar=molecular, scaling=[])
    print(f"{row['label_id']}: {row['density_g_per_ml']:.3f} g/mL, box {box['seconds']:.1f} s; from the stress: "
          f"molecular {molecular:+.3f} kbar, atomic {atomic:+.3f} kbar")
    for step in args.steps:
        rigid = scaling_pressure(numbers, positions, cell, molecule, step, options)
        uniform = scaling_pressure(numbers, positions, cell, molecule, step, options, rigid=False)
        row["scaling"].append(dict(step=step, rigid_kbar=rigid["pressure_kbar"], uniform_kbar=uniform["pressure_kbar"],
                                   seconds=rigid["seconds"] + uniform["seconds"]))
        print(f"  -dE/dV at 1 +- {step}: rigid scaling {rigid['pressure_kbar']:+.3f} kbar, "
              f"uniform scaling {uniform['pressure_kbar']:+.3f} kbar")
    alone, seconds = isolated_energies(numbers, positions, molecule, options)
    cohesive = (box["energy"] - alone.sum()) / n_mol
    index = np.searchsorted(np.unique(molecule), molecule)
    in_box = np.bincount(index, weights=box["energies"]) - alone
    row.update(isolated_eV=alone.tolist(), seconds_isolated=seconds, cohesive_eV=cohesive,
               cohesive_kJ_per_mol=cohesive * KJ_PER_EV, molecule_binding_in_box_eV=in_box.tolist())
    print(f"  cohesive energy {cohesive:.4f} eV/molecule ({cohesive * KJ_PER_EV:.2f} kJ/mol)")
    if not args.molecules:
        return row
    own = centres(positions, molecule)
    centre = own[np.argmin(np.linalg.norm(own - cell.sum(0) / 2, axis=1))]
    clusters = []
    for n in args.molecules:
        cluster, copies, owner, parents, distance = cut_cluster(positions, cell, molecule, centre, n)
        result = single_point(numbers[copies], cluster, None, options)
        binding = (result["energy"] - alone[parents].sum()) / n
        dipole = result["dipole"] * DEBYE_IN_E_A
        boundary = 2 * np.pi * COULOMB * dipole @ dipole / (3 * n * volume / n_mol) / n
        # each molecule's binding from tblite's atom energies, for the core/shell split
        per_molecule = np.bincount(owner, weights=result["energies"]) - alone[parents]
        core = distance <= np.median(distance)
        inner = distance <= distance.max() - args.inner
        clusters.append(dict(molecules=n, atoms=len(cluster), radius_A=float(distance.max()), seconds=result["seconds"],
                             energy_eV=result["energy"], binding_eV=binding, binding_kJ_per_mol=binding * KJ_PER_EV,
                             dipole_e_A=float(np.linalg.norm(dipole)), boundary_eV_per_molecule=float(boundary),
                             core_binding_eV=float(per_molecule[core].mean()),
                             shell_binding_eV=float(per_molecule[~core].mean()), inner_molecules=int(inner.sum()),
                             inner_binding_eV=float(per_molecule[inner].mean()) if inner.any() else None,
                             inner_binding_in_box_eV=float(in_box[parents[inner]].mean()) if inner.any() else None))
        print(f"  cluster of {n:3d} molecules ({len(cluster)} atoms, R {distance.max():.1f} Å): {result['seconds']:6.1f} s, "
              f"binding {binding:.4f} eV/molecule (core {per_molecule[core].mean():.4f}, shell {per_molecule[~core].mean():.4f}), "
              f"dipole term {boundary:.4f}")
        if n in args.vacuum:
            clusters[-1]["vacuum_cells"] = vacuum = vacuum_cell_offsets(numbers[copies], cluster, result["energy"],
                                                                        args.paddings, options)
            print("    periodic minus non-periodic energy of this cluster in cubic cells: "
                  + ", ".join(f"{c['edge_A']:.0f} Å {c['difference_eV']:+.4f} eV" for c in vacuum["cells"])
                  + f"; fit {vacuum['infinite_cell_eV']:+.4f} eV + {vacuum['per_inverse_volume_eV_A3']:.0f} eV Å^3 / V")
        if inner.any():
            print(f"    {inner.sum()} inner molecules: {per_molecule[inner].mean():.4f} eV in the cluster, "
                  f"{in_box[parents[inner]].mean():.4f} eV in the periodic box")
    fit = bulk_fit([c["molecules"] for c in clusters], [c["binding_eV"] for c in clusters])
    fit["bulk_kJ_per_mol"] = fit["bulk_eV"] * KJ_PER_EV
    fit["bulk_minus_periodic_eV"] = fit["bulk_eV"] - cohesive
    row.update(clusters=clusters, extrapolation=fit)
    print(f"  extrapolated bulk binding {fit['bulk_eV']:.4f} eV/molecule against periodic {cohesive:.4f} "
          f"(difference {fit['bulk_minus_periodic_eV']:+.4f} eV = {fit['bulk_minus_periodic_eV'] * KJ_PER_EV:+.2f} kJ/mol)")
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="extended XYZ of periodic boxes with molID")
    parser.add_argument("--boxes", nargs="+", default=["npt5-28", "npt5-16"], help="label_id of the boxes to check")
    parser.add_argument("--molecules", type=int, nargs="*", default=[10, 15, 20, 30, 40],
                        help="cluster sizes (molecules) for the cohesive energy; none skips the clusters")
    parser.add_argument("--cluster-boxes", type=int, default=2, help="how many of --boxes get the cluster check")
    parser.add_argument("--vacuum", type=int, nargs="*", default=[10, 20],
                        help="cluster sizes (of --molecules) also computed periodic in vacuum cells (first box only)")
    parser.add_argument("--paddings", type=float, nargs="+", default=[10.0, 16.0, 24.0], help="Å of vacuum cells")
    parser.add_argument("--steps", type=float, nargs="+", default=[0.005, 0.001],
                        help="relative box scalings of the central differences")
    parser.add_argument("--inner", type=float, default=6.0,
                        help="Å: molecules this far inside a cluster's radius are compared with the box")
    parser.add_argument("--accuracy", type=float, default=1.0, help="tblite numerical accuracy")
    parser.add_argument("--max-iterations", type=int, default=250, help="tblite SCF iterations")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args(argv)
    frames = {a.info.get("label_id"): a for a in read(args.data, index=":")}
    options = settings(args.accuracy, args.max_iterations)
    start = time.perf_counter()
    rows = []
    sizes, vacuum = args.molecules, args.vacuum
    for k, label_id in enumerate(args.boxes):
        args.molecules = sizes if k < args.cluster_boxes else []
        args.vacuum = vacuum if k == 0 else []
        rows.append(check_box(frames[label_id], args, options))
    results = dict(data=os.path.relpath(args.data, ROOT), tblite=version("tblite"), settings=options, charge=0,
                   multiplicity=1, steps=args.steps, machine=machine(), threads=os.environ.get("OMP_NUM_THREADS"),
                   wall_s=time.perf_counter() - start, boxes=rows)
    print(f"\n{'box':>9} {'g/mL':>6} {'step':>6} {'P stress':>9} {'P rigid':>8} {'P atomic':>9} {'P unif.':>8} "
          f"{'E_coh periodic':>15} {'E_b clusters':>13}   (kbar; eV/molecule)")
    for row in rows:
        bulk = row.get("extrapolation", {}).get("bulk_eV")
        for k, scaled in enumerate(row["scaling"]):
            energies = f" {row['cohesive_eV']:15.4f} {'' if bulk is None else f'{bulk:13.4f}'}" if k == 0 else ""
            print(f"{row['label_id']:>9} {row['density_g_per_ml']:6.3f} {scaled['step']:6.3f} "
                  f"{row['stress_molecular_kbar']:+9.3f} {scaled['rigid_kbar']:+8.3f} {row['stress_atomic_kbar']:+9.3f} "
                  f"{scaled['uniform_kbar']:+8.3f}{energies}")
    save_results(args.output, "xtb_reference", results)


if __name__ == "__main__":
    main()
