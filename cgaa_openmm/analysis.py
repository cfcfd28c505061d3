"""Trajectory analysis with mdtraj: radial distribution functions and density (``cgaa-openmm analyze``).

Units: nm (distances, box), nm³ (volume), ps (time), g/mL (density).
RDFs are taken between molecule centres of mass, one per pair of residue
names, and between the atoms of mdtraj selections; the density of every frame
comes from the topology's element masses and the frame's box volume.
"""
import csv
import json
import os
import struct
from itertools import combinations_with_replacement
from typing import Dict, List, Optional, Sequence

import matplotlib
import mdtraj
import numpy as np
from openmm import unit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

#: ps per AKMA time unit, the unit of the timestep in a DCD header.
AKMA_PS = 0.04888821


class AnalysisError(Exception):
    """A trajectory, topology or selection that cannot be analysed; the message says why."""


def load_trajectory(trajectory: str, top: Optional[str] = None) -> mdtraj.Trajectory:
    """A periodic trajectory with its topology (default: ``topology.pdb``, else ``topology.cif``, beside
    it); DCD frames get their times (ps) from the file header."""
    if top is None:
        beside = [os.path.join(os.path.dirname(trajectory), f"topology.{ext}") for ext in ("pdb", "cif")]
        top = next((path for path in beside if os.path.exists(path)), beside[0])
    for path in (trajectory, top):
        if not os.path.exists(path):
            raise AnalysisError(f"file not found: {path}")
    try:
        traj = mdtraj.load(trajectory, top=top)
    except (ValueError, OSError, IndexError) as error:
        raise AnalysisError(f"cannot read {trajectory} with topology {top}: {error}") from error
    if traj.unitcell_vectors is None:
        raise AnalysisError(f"{trajectory} has no periodic box: RDFs and density need one")
    if trajectory.lower().endswith(".dcd"):
        traj.time = dcd_times(trajectory, traj.n_frames)
    return traj


def dcd_times(path: str, n_frames: int) -> np.ndarray:
    """Time (ps) of each frame of a DCD file, from its first step, step interval and timestep."""
    with open(path, "rb") as dcd:
        head = dcd.read(48)
    first, interval = struct.unpack("<2i", head[12:20])
    timestep = struct.unpack("<f", head[44:48])[0] * AKMA_PS
    return np.round((first + interval * np.arange(n_frames)) * timestep, 6)   # the header holds float32


def density(traj: mdtraj.Trajectory) -> np.ndarray:
    """Mass density (g/mL) of every frame: the element masses over the box volume (mdtraj's, in kg/m³)."""
    return mdtraj.density(traj) * (1.0 * unit.kilogram / unit.meter ** 3).value_in_unit(unit.gram / unit.milliliter)


def block_average(values: np.ndarray, blocks: int = 5):
    """Mean of a time series and its standard error from ``blocks`` contiguous block means.

    Block means of a correlated series are close to independent when blocks are
    longer than its correlation time, so their spread gives an honest error bar.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < blocks:
        raise AnalysisError(f"block averaging needs at least {blocks} frames, not {len(values)}")
    means = np.array([chunk.mean() for chunk in np.array_split(values, blocks)])
    return float(values.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def molecule_centres(traj: mdtraj.Trajectory) -> mdtraj.Trajectory:
    """One particle per bonded molecule at its centre of mass, in a residue named like the molecule's."""
    whole = traj.make_molecules_whole()
    molecules = [sorted(atom.index for atom in molecule) for molecule in traj.topology.find_molecules()]
    masses = np.array([atom.element.mass for atom in traj.topology.atoms])
    topology = mdtraj.Topology()
    chain = topology.add_chain()
    xyz = np.empty((traj.n_frames, len(molecules), 3))
    for i, atoms in enumerate(molecules):
        residue = topology.add_residue(traj.topology.atom(atoms[0]).residue.name, chain)
        topology.add_atom("COM", mdtraj.element.virtual, residue)
        weights = masses[atoms] / masses[atoms].sum()
        xyz[:, i] = np.einsum("fai,a->fi", whole.xyz[:, atoms], weights)
    return mdtraj.Trajectory(xyz, topology, traj.time, traj.unitcell_lengths, traj.unitcell_angles)


def half_width(traj: mdtraj.Trajectory) -> float:
    """Half the narrowest box width (nm) over all frames: the largest r an RDF can reach."""
    a, b, c = (traj.unitcell_vectors[:, i] for i in range(3))
    volume = np.abs(np.einsum("fi,fi->f", a, np.cross(b, c)))
    widths = [volume / np.linalg.norm(np.cross(u, v), axis=1) for u, v in ((b, c), (c, a), (a, b))]
    return 0.5 * float(np.min(widths))


def rdf(traj: mdtraj.Trajectory, selection1: str, selection2: Optional[str] = None, r_max: float = 1.0,
        bin_width: float = 0.01):
    """Bin centres r (nm) and g(r) between the atoms of two mdtraj selections (one: within it)."""
    try:
        pairs = traj.topology.select_pairs(selection1, selection2 or selection1)
    except Exception as error:              # mdtraj's parser raises several kinds
        raise AnalysisError(f"bad selection {selection1!r} / {selection2!r}: {error}") from error
    if len(pairs) == 0:
        raise AnalysisError(f"selection {selection1!r} / {selection2 or selection1!r} matches no atom pairs")
    return mdtraj.compute_rdf(traj, pairs, r_range=(0.0, r_max), bin_width=bin_width)


def analyze(trajectory: str, top: Optional[str] = None, pair: Sequence[Sequence[str]] = (),
            r_max: Optional[float] = None, bin_width: float = 0.01, skip: int = 0,
            output: Optional[str] = None) -> Dict:
    """RDFs (after ``skip`` frames), the density of every frame of a trajectory, and the mean
    density after ``skip`` frames with its block-averaged standard error.

    Writes ``rdf.csv``, ``rdf.png``, ``density.csv``, ``density.png`` and
    ``analysis.json`` (the summary, also returned) to ``output`` (default: the
    trajectory's directory). ``pair`` holds one or two mdtraj selections per
    atom-pair RDF.
    """
    for selections in pair:
        if len(selections) not in (1, 2):
            raise AnalysisError(f"--pair takes one or two selections, not {len(selections)}: {selections}")
    traj = load_trajectory(trajectory, top)
    if not 0 <= skip < traj.n_frames:
        raise AnalysisError(f"skip must leave at least one of the {traj.n_frames} frames, not {skip}")
    r_max = r_max or half_width(traj)
    output = output or os.path.dirname(trajectory) or "."
    os.makedirs(output, exist_ok=True)

    sample = traj[skip:]
    centres = molecule_centres(sample)
    names = sorted({residue.name for residue in centres.topology.residues})
    rdfs = {}
    for a, b in combinations_with_replacement(names, 2):
        rdfs[f"COM {a}-{b}"] = rdf(centres, f"resname {a}", f"resname {b}", r_max, bin_width)
    if len(names) > 1:
        rdfs["COM all"] = rdf(centres, "all", None, r_max, bin_width)
    for selections in pair:
        rdfs[" / ".join(selections)] = rdf(sample, *selections, r_max=r_max, bin_width=bin_width)
    rho = density(traj)
    sampled = {}
    if traj.n_frames - skip >= 5:
        sampled = dict(zip(("mean", "standard_error"), block_average(rho[skip:])))

    r = next(iter(rdfs.values()))[0]
    write_csv(os.path.join(output, "rdf.csv"), ["r (nm)"] + list(rdfs), [r] + [g for _, g in rdfs.values()])
    write_csv(os.path.join(output, "density.csv"), ["time (ps)", "volume (nm^3)", "density (g/mL)"],
              [traj.time, traj.unitcell_volumes, rho])
    rdf_plot(rdfs, os.path.join(output, "rdf.png"))
    density_plot(traj.time, rho, os.path.join(output, "density.png"))
    summary = dict(trajectory=trajectory, frames=traj.n_frames, rdf_frames=sample.n_frames,
                   time_ps=[float(traj.time[0]), float(traj.time[-1])], r_max_nm=r_max, bin_width_nm=bin_width,
                   density_g_per_ml=dict(mean=float(rho.mean()), std=float(rho.std()),
                                         first=float(rho[0]), last=float(rho[-1]),
                                         after_skip=dict(sampled, frames=int(traj.n_frames - skip), blocks=5)),
                   rdf_peaks={label: dict(r_nm=float(r[np.argmax(g)]), g=float(g.max()))
                              for label, (r, g) in rdfs.items()})
    with open(os.path.join(output, "analysis.json"), "w") as file:
        json.dump(summary, file, indent=1)
    return summary


def write_csv(path: str, header: List[str], columns: Sequence[np.ndarray]) -> None:
    """Columns of numbers under a header row."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(zip(*(np.asarray(c, dtype=float).tolist() for c in columns)))


def rdf_plot(rdfs: Dict, path: str) -> None:
    """Centre-of-mass RDFs on the left, atom-pair RDFs (if any) on the right; r in Å."""
    groups = [[k for k in rdfs if k.startswith("COM ")], [k for k in rdfs if not k.startswith("COM ")]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.4), squeeze=False)
    for ax, labels in zip(axes[0], groups):
        for label in labels:
            r, g = rdfs[label]
            ax.plot(10 * r, g, lw=1.2, label=label)
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.set_title("molecule centres of mass" if labels[0].startswith("COM ") else "atom pairs", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def density_plot(time: np.ndarray, rho: np.ndarray, path: str) -> None:
    """Density (g/mL) against time (ps), with its mean."""
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.plot(time, rho, marker=".", lw=1)
    ax.axhline(rho.mean(), color="k", lw=0.6, ls="--", label=f"mean {rho.mean():.4f} g/mL")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("density (g/mL)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
