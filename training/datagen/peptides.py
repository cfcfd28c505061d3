"""GFN2-xTB data for capped peptides, one grain per residue: ``cgaa-openmm generate-data``.

1. **Sampling.** Classical MD of the peptide with OpenMM and amber14 (ff14SB), in GBn2
   implicit solvent or in a box of TIP3P water, one run per (temperature, seed) *stage*:
   minimisation, ``equilibration`` ps, then ``frames`` frames ``interval`` ps apart
   (Langevin, flexible peptide bonds so that the data hold X-H vibrations; rigid water).
   With ``dihedral_grid`` = n, every (temperature, seed) becomes n x n *umbrella windows*: the
   backbone phi and psi of every residue are held near (phi0, psi0) on an n x n grid over
   [-180, 180) degrees by a harmonic restraint of ``restraint`` kJ/mol/rad^2, so the data cover
   the whole Ramachandran plane, barriers included, not only the basins free MD visits.
   Stages run in ``workers`` processes; each writes ``OUTPUT_sampling/T<K>-s<seed>[-phi<a>-psi<b>].npz``
   when it is done, and a stage whose file exists is not run again.
2. **Cutting.** Each frame becomes one ``ase.Atoms``: the peptide alone, or (explicit water
   with ``water_radius`` > 0) the peptide plus every whole water molecule with an atom within
   ``water_radius`` Å of a peptide atom, nearest first, at most ``max_waters``
   (:func:`training.datagen.clusters.cut_cluster`). The per-atom integer column ``residue`` is the
   grain: the peptide's residue index in the topology (caps are residues), then one per water.
3. **Labelling.** :func:`training.datagen.label.label` computes GFN2-xTB energies (``energy_xtb``, eV)
   and forces (``forces_xtb``, eV/Å) with tblite and appends them to ``OUTPUT`` (extended XYZ);
   a configuration whose ``label_id`` is already there is not labelled again.

Beside ``OUTPUT`` go ``OUTPUT`` with ``.pdb`` (the peptide's topology, atoms in the order of
every configuration: ``grains: topology`` in a training config) and ``OUTPUT.json`` (labelling
settings and versions from ``label``, plus ``generation``: the sampling settings, software
versions, sizes and wall times). Units: Å, eV, eV/Å, ps, fs, K.
"""
import json
import os
import platform as platform_module
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from cgaa_openmm.data import PEPTIDES

FORCEFIELD = ("amber14-all.xml",)
SOLVENTS = {"implicit": ("implicit/gbn2.xml",), "explicit": ("amber14/tip3p.xml",)}
#: Settings that define what a sampling stage produces; a stage file written with others is refused.
SAMPLING_KEYS = ("peptide_sha256", "solvent", "padding", "frames", "interval", "equilibration", "timestep",
                 "friction", "cutoff", "restraint")


class GenerationError(ValueError):
    """Settings that cannot be used, or that disagree with the data already in the output."""


def peptide_path(peptide: str) -> str:
    """The PDB of a shipped peptide name (see ``PEPTIDES``), or ``peptide`` if it is a file."""
    if peptide in PEPTIDES:
        return PEPTIDES[peptide]
    if os.path.isfile(peptide):
        return peptide
    raise GenerationError(f"{peptide!r} is neither a PDB file nor a shipped peptide ({', '.join(PEPTIDES)})")


def residue_grains(topology) -> np.ndarray:
    """Per-atom residue index of an OpenMM topology: one grain per residue, caps included."""
    return np.array([atom.residue.index for atom in topology.atoms()], dtype=int)


def versions() -> Dict[str, str]:
    """Versions of the software that samples and labels."""
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": platform_module.python_version()}
    for name in ("cgaa-openmm", "openmm", "tblite", "ase", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def build_system(pdb_file: str, solvent: str = "implicit", padding: float = 1.0, cutoff: float = 0.9):
    """(topology, positions, system, number of peptide atoms) for amber14 MD of a peptide.

    ``implicit``: GBn2, no cutoff. ``explicit``: TIP3P water ``padding`` nm around the peptide
    (plus Na+/Cl- to neutralise a charged one), PME with ``cutoff`` nm. Peptide bonds are
    flexible (no constraints), waters rigid.
    """
    from openmm import app, unit
    if solvent not in SOLVENTS:
        raise GenerationError(f"solvent must be one of {sorted(SOLVENTS)}, not {solvent!r}")
    pdb = app.PDBFile(pdb_file)
    forcefield = app.ForceField(*FORCEFIELD, *SOLVENTS[solvent])
    modeller = app.Modeller(pdb.topology, pdb.positions)
    n_peptide = pdb.topology.getNumAtoms()
    if solvent == "implicit":
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    else:
        modeller.addSolvent(forcefield, model="tip3p", padding=padding * unit.nanometer)
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                         nonbondedCutoff=cutoff * unit.nanometer, constraints=None,
                                         rigidWater=True)
    return modeller.topology, modeller.positions, system, n_peptide


def backbone_dihedrals(topology) -> List[tuple]:
    """Atom indices of every backbone phi (C-N-CA-C) and psi (N-CA-C-N) of a peptide topology.

    A residue with atoms N, CA and C has a phi if the previous residue has a C, and a psi if the
    next one has an N; the caps (ACE, NME) have none of their own but end the neighbours' ones.
    """
    residues = list(topology.residues())
    named = [{atom.name: atom.index for atom in residue.atoms()} for residue in residues]
    found = []
    for k, atoms in enumerate(named):
        if not {"N", "CA", "C"} <= set(atoms):
            continue
        if k > 0 and "C" in named[k - 1] and residues[k - 1].chain == residues[k].chain:
            found.append(("phi", (named[k - 1]["C"], atoms["N"], atoms["CA"], atoms["C"])))
        if k + 1 < len(named) and "N" in named[k + 1] and residues[k + 1].chain == residues[k].chain:
            found.append(("psi", (atoms["N"], atoms["CA"], atoms["C"], named[k + 1]["N"])))
    return found


def add_dihedral_restraints(system, topology, phi: float, psi: float, k: float) -> int:
    """Add harmonic restraints (``k`` kJ/mol/rad^2) holding every backbone phi at ``phi`` and psi at ``psi`` (degrees).

    Returns the number of restrained dihedrals.
    """
    import openmm
    force = openmm.CustomTorsionForce("0.5*k_restraint*d^2; d = min(a, 2*pi - a); a = abs(theta - theta0);"
                                      f" pi = {np.pi!r}")
    force.addGlobalParameter("k_restraint", k)
    force.addPerTorsionParameter("theta0")
    dihedrals = backbone_dihedrals(topology)
    for kind, atoms in dihedrals:
        force.addTorsion(*atoms, [np.radians(phi if kind == "phi" else psi)])
    system.addForce(force)
    return len(dihedrals)


def grid_windows(n: int) -> List[tuple]:
    """The (phi0, psi0) degrees of an n x n grid over [-180, 180), or ``[None]`` for free MD (n = 0)."""
    if n == 0:
        return [None]
    angles = [-180.0 + 360.0 * i / n for i in range(n)]
    return [(phi, psi) for phi in angles for psi in angles]


def peptide_charge(system, n_peptide: int) -> int:
    """Net charge (e) of the first ``n_peptide`` particles from the force field's partial charges."""
    import openmm
    from openmm import unit
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    total = sum(force.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in range(n_peptide))
    return int(round(total))


def run_stage(job: Dict[str, Any]) -> Dict[str, Any]:
    """One sampling stage: MD at one temperature and seed (and umbrella window ``job['window']``,
    (phi0, psi0) degrees, or None); writes ``job['path']`` (npz, atomically).

    The file holds ``positions`` (frames, atoms, 3) Å of the whole system (peptide first, molecules
    whole), ``box`` (frames, 3, 3) Å (explicit water) and ``settings`` (JSON text).
    """
    import openmm
    from openmm import unit
    s = job["settings"]
    start = time.perf_counter()
    topology, positions, system, _ = build_system(job["pdb"], s["solvent"], s["padding"], s["cutoff"])
    if job["window"] is not None:
        add_dihedral_restraints(system, topology, *job["window"], s["restraint"])
    integrator = openmm.LangevinMiddleIntegrator(job["temperature"] * unit.kelvin, s["friction"] / unit.picosecond,
                                                 s["timestep"] * unit.femtosecond)
    integrator.setRandomNumberSeed(job["seed"])
    platform = openmm.Platform.getPlatformByName(job["platform"])
    properties = {"Threads": str(job["threads"])} if job["platform"] == "CPU" else {}
    context = openmm.Context(system, integrator, platform, properties)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(job["temperature"] * unit.kelvin, job["seed"])
    steps_per_frame = max(1, int(round(s["interval"] * 1000 / s["timestep"])))
    integrator.step(int(round(s["equilibration"] * 1000 / s["timestep"])))
    frames, boxes = [], []
    for _ in range(s["frames"]):
        integrator.step(steps_per_frame)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
        boxes.append(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom))
    tmp = job["path"] + ".tmp.npz"
    np.savez_compressed(tmp, positions=np.array(frames, dtype=np.float64), box=np.array(boxes, dtype=np.float64),
                        settings=json.dumps(s, sort_keys=True), temperature=job["temperature"], seed=job["seed"],
                        window=np.array(job["window"] if job["window"] is not None else [], dtype=np.float64),
                        seconds=time.perf_counter() - start)
    os.replace(tmp, job["path"])
    return dict(stage=os.path.basename(job["path"]), seconds=round(time.perf_counter() - start, 2),
                md_steps=steps_per_frame * s["frames"] + int(round(s["equilibration"] * 1000 / s["timestep"])))


def stage_name(temperature: float, seed: int, window: Optional[tuple] = None) -> str:
    name = f"T{temperature:g}-s{seed}"
    return name if window is None else name + f"-phi{window[0]:g}-psi{window[1]:g}"


def rattled(atoms, rattle: float, rng: np.random.Generator):
    """A copy of ``atoms`` with Gaussian displacements of ``rattle`` Å per component, ``label_id`` + ``-rattled``."""
    moved = atoms.copy()
    moved.positions = atoms.positions + rng.normal(scale=rattle, size=atoms.positions.shape)
    moved.info.update(label_id=atoms.info["label_id"] + "-rattled", rattle=rattle)
    return moved


def frames_to_atoms(stage_file: str, topology, n_peptide: int, charge: int, name: str,
                    water_radius: float = 0.0, max_waters: Optional[int] = None, rattle: float = 0.0) -> List:
    """The configurations of one sampling stage as ``ase.Atoms`` with a ``residue`` column and a ``label_id``.

    With ``rattle`` (Å), every frame is followed by a copy whose atoms are displaced by Gaussian
    noise of that standard deviation per component (seeded by the frame), ``label_id`` ending in
    ``-rattled``: stretched and squeezed bonds that MD at these temperatures rarely visits.
    """
    from ase import Atoms
    from training.datagen.clusters import cut_cluster
    data = np.load(stage_file)
    temperature, seed = float(data["temperature"]), int(data["seed"])
    window = tuple(float(a) for a in data["window"]) if "window" in data and len(data["window"]) else None
    numbers = np.array([atom.element.atomic_number for atom in topology.atoms()])
    residue = residue_grains(topology)
    n_peptide_residues = int(residue[:n_peptide].max()) + 1
    centre = np.arange(n_peptide)
    # cut_cluster unwraps around the first centre atom: start from the peptide atom nearest its middle.
    first = data["positions"][0, :n_peptide]
    middle = int(np.argmin(np.linalg.norm(first - first.mean(0), axis=1)))
    centre_order = np.concatenate([[middle], np.delete(centre, middle)])
    # Molecule labels for cut_cluster: the peptide is one molecule, every other residue (water, ion) its own.
    molecule = np.where(np.arange(len(numbers)) < n_peptide, -1, residue)
    configs = []
    for k, (positions, box) in enumerate(zip(data["positions"], data["box"])):
        if water_radius > 0:
            indices, xyz = cut_cluster(positions, molecule, centre_order, water_radius, box, max_waters)
            order = np.argsort(indices[:n_peptide])            # back to topology order for the peptide
            indices = np.concatenate([indices[:n_peptide][order], indices[n_peptide:]])
            xyz = np.concatenate([xyz[:n_peptide][order], xyz[n_peptide:]])
            # Waters numbered nearest first, after the peptide's residues.
            first_seen = {r: g for g, r in enumerate(dict.fromkeys(residue[indices[n_peptide:]].tolist()))}
            solvent_grain = np.array([first_seen[r] for r in residue[indices[n_peptide:]]], dtype=int)
            grain = np.concatenate([residue[:n_peptide], n_peptide_residues + solvent_grain])
        else:
            indices, xyz = centre, positions[:n_peptide]
            grain = residue[:n_peptide]
        atoms = Atoms(numbers=numbers[indices], positions=xyz)
        atoms.arrays["residue"] = grain.astype(int)
        atoms.info.update(label_id=f"{name}-{stage_name(temperature, seed, window)}-{k:04d}", temperature=temperature,
                          seed=seed, frame=k, charge=charge, n_waters=int(len(set(grain.tolist())) - n_peptide_residues))
        if window is not None:
            atoms.info.update(phi0=window[0], psi0=window[1])
        configs.append(atoms)
        if rattle > 0:
            stream = [int(temperature * 1000), seed, k] + ([] if window is None else [int(a) % 360 for a in window])
            configs.append(rattled(atoms, rattle, np.random.default_rng(stream)))
    return configs


def trajectory_configurations(topology_file: str, trajectory: str, selection: str = "protein", skip: int = 0,
                              stride: int = 1, prefix: str = "frame", rattle: float = 0.0, charge: int = 0,
                              seed: int = 0) -> List:
    """The atoms of ``selection`` (an mdtraj selection, e.g. an ML region) in frames of a trajectory.

    Each kept frame (after ``skip``, every ``stride``-th) becomes an ``ase.Atoms`` in Å with the
    per-atom ``residue`` column (the grain: residues of the selection numbered 0, 1, ... in
    topology order), ``charge`` (e) and a ``label_id`` ``PREFIX-FRAME``, ready for
    :func:`training.datagen.label.label`. In a periodic trajectory, molecules split across the box are
    first made whole along the topology's bonds. With ``rattle`` (Å), every frame is
    followed by a copy with Gaussian displacements of that size (``label_id`` ending ``-rattled``).
    """
    import mdtraj
    from ase import Atoms
    frames = mdtraj.load(trajectory, top=topology_file)
    if frames.unitcell_vectors is not None:
        frames.make_molecules_whole(inplace=True)
    atoms_index = frames.topology.select(selection)
    if len(atoms_index) == 0:
        raise GenerationError(f"selection {selection!r} matches no atom of {topology_file}")
    chosen = list(range(skip, frames.n_frames, max(1, stride)))
    if not chosen:
        raise GenerationError(f"{trajectory} has {frames.n_frames} frames, none left after skipping {skip}")
    residues = [frames.topology.atom(int(i)).residue.index for i in atoms_index]
    grain = np.unique(residues, return_inverse=True)[1].astype(int)
    numbers = np.array([frames.topology.atom(int(i)).element.atomic_number for i in atoms_index])
    rng = np.random.default_rng(seed)
    configs = []
    for k in chosen:
        atoms = Atoms(numbers=numbers, positions=10.0 * frames.xyz[k, atoms_index])
        atoms.arrays["residue"] = grain
        atoms.info.update(label_id=f"{prefix}-{k:05d}", frame=k, charge=charge)
        configs.append(atoms)
        if rattle > 0:
            configs.append(rattled(atoms, rattle, rng))
    return configs


def generate(peptide: str, output: str, temperatures: Sequence[float] = (300.0,), seeds: Sequence[int] = (1,),
             frames: int = 100, interval: float = 1.0, equilibration: float = 10.0, timestep: float = 1.0,
             friction: float = 1.0, solvent: str = "implicit", padding: float = 1.0, cutoff: float = 0.9,
             water_radius: float = 0.0, max_waters: Optional[int] = None, rattle: float = 0.0,
             dihedral_grid: int = 0, restraint: float = 100.0, workers: int = 1, threads: int = 1,
             platform: str = "CPU", progress: bool = True) -> Dict[str, Any]:
    """Sample, cut and label a peptide data set into the extended XYZ ``output``; see the module docstring.

    Running it again with the same settings resumes: finished sampling stages and labelled
    configurations are kept. Returns the ``generation`` record also written to ``output.json``.
    """
    import hashlib

    from openmm import app
    from tqdm import tqdm

    from training.datagen.label import label
    wall = time.perf_counter()
    pdb_file = peptide_path(peptide)
    if frames < 1 or interval <= 0 or timestep <= 0 or equilibration < 0 or workers < 1 or threads < 1:
        raise GenerationError("frames, workers and threads must be >= 1; interval and timestep > 0; "
                              "equilibration >= 0")
    if dihedral_grid < 0 or restraint <= 0:
        raise GenerationError("dihedral_grid must be >= 0 (0: free MD) and restraint > 0 kJ/mol/rad^2")
    if water_radius > 0 and solvent != "explicit":
        raise GenerationError("water_radius needs explicit water: use --solvent explicit")
    if not output.endswith(".xyz"):
        raise GenerationError(f"the output must be an extended XYZ file ending in .xyz, not {output!r}")
    with open(pdb_file, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    settings = dict(peptide_sha256=sha, solvent=solvent, padding=padding, frames=frames, interval=interval,
                    equilibration=equilibration, timestep=timestep, friction=friction, cutoff=cutoff,
                    restraint=restraint if dihedral_grid else None)
    stem = output[:-len(".xyz")]
    sampling_dir = stem + "_sampling"
    os.makedirs(sampling_dir, exist_ok=True)
    name = os.path.splitext(os.path.basename(pdb_file))[0]

    topology, _, system, n_peptide = build_system(pdb_file, solvent, padding, cutoff)
    charge = peptide_charge(system, n_peptide)
    if dihedral_grid and not backbone_dihedrals(topology):
        raise GenerationError(f"{pdb_file} has no backbone phi/psi (residues with N, CA, C) to restrain")
    peptide_topology = app.PDBFile(pdb_file)
    with open(stem + ".pdb", "w") as f:
        app.PDBFile.writeFile(peptide_topology.topology, peptide_topology.positions, f, keepIds=True)

    stages = [(float(t), int(s), w) for t in temperatures for s in seeds for w in grid_windows(dihedral_grid)]
    jobs, stage_seconds = [], {}
    for temperature, seed, window in stages:
        path = os.path.join(sampling_dir, stage_name(temperature, seed, window) + ".npz")
        if os.path.exists(path):
            with np.load(path) as done:
                recorded = json.loads(str(done["settings"]))
                stage_seconds[os.path.basename(path)] = round(float(done["seconds"]), 2)
            differ = [k for k in SAMPLING_KEYS if recorded.get(k) != settings[k]]
            if differ:
                raise GenerationError(f"{path} was sampled with other settings ({', '.join(differ)}); use "
                                      f"another output, or delete {sampling_dir} and {output} to start afresh")
            continue
        jobs.append(dict(pdb=pdb_file, settings=settings, temperature=temperature, seed=seed, window=window,
                         path=path, platform=platform, threads=threads))
    sampling_start = time.perf_counter()
    bar = tqdm(total=len(stages), initial=len(stages) - len(jobs), desc="sampling", unit="stage",
               disable=not progress)
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            result = run_stage(job)
            stage_seconds[result["stage"]] = result["seconds"]
            bar.update()
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_stage, job) for job in jobs]):
                result = future.result()
                stage_seconds[result["stage"]] = result["seconds"]
                bar.update()
    bar.close()
    sampling_wall = time.perf_counter() - sampling_start

    configs = []
    for temperature, seed, window in stages:
        configs += frames_to_atoms(os.path.join(sampling_dir, stage_name(temperature, seed, window) + ".npz"), topology,
                                   n_peptide, charge, name, water_radius, max_waters, rattle)
    label_start = time.perf_counter()
    label(configs, output, workers=workers, progress=progress)
    label_wall = time.perf_counter() - label_start

    record_path = output + ".json"
    with open(record_path) as f:
        record = json.load(f)
    generation = dict(
        command="cgaa-openmm generate-data", peptide=os.path.basename(pdb_file) if pdb_file in PEPTIDES.values()
        else pdb_file, residues=[r.name for r in peptide_topology.topology.residues()], n_peptide_atoms=n_peptide,
        charge=charge, forcefield=list(FORCEFIELD + SOLVENTS[solvent]), temperatures=[float(t) for t in temperatures],
        seeds=list(seeds), sampling=settings, water_radius=water_radius, max_waters=max_waters,
        rattle=rattle, dihedral_grid=dihedral_grid, workers=workers, threads=threads, platform=platform, versions=versions(),
        n_configs=record.get("labelled"), n_atoms_per_config=sorted({len(a) for a in configs}),
        stage_seconds=stage_seconds, wall_seconds_this_run=dict(
            sampling=round(sampling_wall, 2), labelling=round(label_wall, 2),
            total=round(time.perf_counter() - wall, 2)),
        file_bytes=os.path.getsize(output))
    runs = record.get("generation", {}).get("runs", [])
    generation["runs"] = runs + [dict(generation["wall_seconds_this_run"], new_stages=len(jobs))]
    record["generation"] = generation
    with open(record_path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(record_path + ".tmp", record_path)
    return generation


def add_arguments(parser) -> None:
    parser.add_argument("peptide", help=f"PDB of a capped peptide (amber14 names), or one of: {', '.join(PEPTIDES)}")
    parser.add_argument("--output", required=True, help="labelled extended XYZ (OUTPUT.pdb, OUTPUT.json and "
                                                        "OUTPUT_sampling/ are written beside it)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[300.0], help="K, one MD run per "
                                                                                       "temperature and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="velocity and Langevin seeds")
    parser.add_argument("--frames", type=int, default=100, help="configurations per temperature and seed")
    parser.add_argument("--interval", type=float, default=1.0, help="ps between frames")
    parser.add_argument("--equilibration", type=float, default=10.0, help="ps of MD before the first frame")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs (peptide bonds to H are flexible)")
    parser.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps")
    parser.add_argument("--solvent", default="implicit", choices=sorted(SOLVENTS),
                        help="implicit: GBn2; explicit: TIP3P box with PME")
    parser.add_argument("--padding", type=float, default=1.0, help="nm of water around the peptide (explicit)")
    parser.add_argument("--cutoff", type=float, default=0.9, help="nm, PME direct-space cutoff (explicit)")
    parser.add_argument("--water-radius", type=float, default=0.0,
                        help="Å: keep whole waters with an atom this close to the peptide (0: peptide alone)")
    parser.add_argument("--max-waters", type=int, help="at most this many waters per configuration, nearest first")
    parser.add_argument("--rattle", type=float, default=0.0,
                        help="Å: also label a copy of every frame with Gaussian displacements of this size")
    parser.add_argument("--dihedral-grid", type=int, default=0, metavar="N",
                        help="umbrella windows: restrain every backbone phi/psi to each point of an N x N grid "
                             "(one stage per window, temperature and seed; 0: free MD)")
    parser.add_argument("--restraint", type=float, default=100.0,
                        help="kJ/mol/rad^2, force constant of the phi/psi restraints of --dihedral-grid")
    parser.add_argument("--workers", type=int, default=1, help="processes for sampling stages and for labelling")
    parser.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads per sampling process")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform for sampling")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def main(args) -> None:
    options = {k: v for k, v in vars(args).items() if k not in ("command", "run", "peptide")}
    generation = generate(args.peptide, **options)
    print(json.dumps({k: generation[k] for k in ("n_configs", "n_atoms_per_config", "charge", "wall_seconds_this_run",
                                                 "file_bytes")}))
