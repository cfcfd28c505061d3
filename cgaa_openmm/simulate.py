"""MD with a CGAA model: ``cgaa-openmm simulate``.

``simulate`` reads a structure (PDB, PDBx, AMBER prmtop + inpcrd, GROMACS top +
gro; the box comes from the input), builds the system with
``CGAAPotential.createSystem``, minimises it unless its RMS force is already
thermal (an equilibrated start is kept as it is), draws velocities at the
temperature and runs NVE, NVT or NPT MD.
Everything it writes goes into one output directory:

``trajectory.dcd``
    positions (nm) and box every ``trajectory_interval`` steps
``log.csv``
    step, time (ps), potential, kinetic and total energy (kJ/mol), temperature
    (K), volume (nm³), density (g/mL) and speed (ns/day) every ``report`` steps
``checkpoint.xml``
    the ``State`` (positions, velocities, box, step, time) every
    ``checkpoint_interval`` steps and at the end, written atomically by
    ``Simulation.saveState``: XML without random-number states, so it loads on
    any platform
``settings.json``
    the settings a continued run must share
``topology.pdb``
    the minimised start with bonds and box: the topology for ``cgaa-openmm analyze``
    (``topology.cif`` above 99,999 atoms)

Running the same command again continues from the checkpoint: ``steps`` is the
total to reach, the step count continues, and the trajectory and log keep what
they held up to the checkpoint's step and are appended to from there.
"""
import json
import os
import re
import struct
import sys
import warnings
from typing import Optional, Sequence

import openmm
from openmm import app, unit
from tqdm import tqdm

#: Input file kinds by extension.
PDB_FILES = (".pdb", ".ent")
PDBX_FILES = (".cif", ".pdbx")
TOPOLOGY_FILES = {".prmtop": "AMBER", ".parm7": "AMBER", ".top": "GROMACS"}
COORDINATE_FILES = {".inpcrd": "AMBER", ".rst7": "AMBER", ".restrt": "AMBER", ".ncrst": "AMBER",
                    ".gro": "GROMACS"}

ENSEMBLES = ("NVE", "NVT", "NPT")
TRAJECTORY, LOG, CHECKPOINT, SETTINGS, TOPOLOGY, TOPOLOGY_PDBX = (
    "trajectory.dcd", "log.csv", "checkpoint.xml", "settings.json", "topology.pdb", "topology.cif")
#: Above this many atoms the start is written as PDBx (PDB atom serial numbers run out).
MAX_PDB_ATOMS = 99999
#: Default RMS force (kJ/mol/nm) the minimiser stops at, and below which it leaves a start alone: just
#: above thermal forces. The EC/EMC liquid equilibrated at 300 K (the bundled ``example_systems/ecemc.pdb``)
#: has 770-800 (both carbonate models); a full minimisation would drain its potential energy, and the run
#: would cool to about 150 K once velocities are drawn. The packed box before equilibration has 1300,
#: clashes far more.
MINIMIZE_TOLERANCE = 1000.0
#: The model precision ``simulate`` picks by platform (see :func:`simulate`).
PLATFORM_PRECISION = {"Reference": "double", "CPU": "single"}
#: Settings that must not change when a run is continued.
RESUME_KEYS = ("inputs", "atoms", "model", "grains", "ensemble", "temperature", "timestep", "friction",
               "pressure", "barostat", "barostat_interval", "trajectory_interval", "hydrogen_mass",
               "density_correction")


class SimulationError(Exception):
    """Input, settings or a platform that ``simulate`` cannot run with; the message says why."""


def read_structure(paths: Sequence[str]):
    """Topology (with the input's box, if any) and positions of one PDB/PDBx file or of a
    topology + coordinates pair (AMBER .prmtop/.parm7 + .inpcrd/.rst7, GROMACS .top + .gro)."""
    for path in paths:
        if not os.path.exists(path):
            raise SimulationError(f"input file not found: {path}")
    kinds = [os.path.splitext(path)[1].lower() for path in paths]
    if len(paths) == 1 and kinds[0] in PDB_FILES + PDBX_FILES:
        structure = (app.PDBxFile if kinds[0] in PDBX_FILES else app.PDBFile)(paths[0])
        return structure.topology, structure.positions
    topologies = [p for p, k in zip(paths, kinds) if k in TOPOLOGY_FILES]
    coordinates = [p for p, k in zip(paths, kinds) if k in COORDINATE_FILES]
    if len(paths) == 2 and len(topologies) == 1 and len(coordinates) == 1:
        top_kind = TOPOLOGY_FILES[os.path.splitext(topologies[0])[1].lower()]
        xyz_kind = COORDINATE_FILES[os.path.splitext(coordinates[0])[1].lower()]
        if top_kind != xyz_kind:
            raise SimulationError(f"{topologies[0]} ({top_kind} topology) does not go with {coordinates[0]} "
                                  f"({xyz_kind} coordinates)")
        import parmed
        try:
            with warnings.catch_warnings():   # force-field parameters are not used: only atoms, bonds, box
                warnings.simplefilter("ignore", parmed.exceptions.ParmedWarning)
                structure = parmed.load_file(topologies[0], xyz=coordinates[0])
        except Exception as error:           # parmed raises many kinds for unreadable files
            raise SimulationError(f"cannot read {topologies[0]} + {coordinates[0]}: {error}") from error
        if structure.coordinates is None:
            raise SimulationError(f"{coordinates[0]} holds no coordinates")
        return structure.topology, structure.positions
    supported = ", ".join(PDB_FILES + PDBX_FILES) + "; or a topology and its coordinates: " + ", ".join(
        f"{t} + {c}" for t in TOPOLOGY_FILES for c in COORDINATE_FILES
        if TOPOLOGY_FILES[t] == COORDINATE_FILES[c])
    raise SimulationError(f"unsupported input {' + '.join(paths)} (supported: {supported})")


def get_platform(name: str, threads: Optional[int]):
    """The OpenMM platform called ``name`` and its properties (``Threads`` on CPU)."""
    try:
        platform = openmm.Platform.getPlatformByName(name)
    except openmm.OpenMMException:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise SimulationError(f"platform {name!r} is not available here (available: {', '.join(names)})") from None
    properties = {"Threads": str(threads)} if threads and name == "CPU" else {}
    return platform, properties


def make_integrator(ensemble: str, temperature: float, timestep: float, friction: float):
    """Velocity Verlet (NVE) or Langevin middle (NVT, NPT); K, fs, 1/ps."""
    if ensemble == "NVE":
        return openmm.VerletIntegrator(timestep * unit.femtosecond)
    return openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, friction / unit.picosecond,
                                           timestep * unit.femtosecond)


def make_barostat(kind: str, pressure: float, temperature: float, interval: int):
    """Isotropic or anisotropic Monte Carlo barostat; bar, K, steps between volume moves."""
    if kind == "isotropic":
        return openmm.MonteCarloBarostat(pressure * unit.bar, temperature * unit.kelvin, interval)
    if kind == "anisotropic":
        return openmm.MonteCarloAnisotropicBarostat(openmm.Vec3(pressure, pressure, pressure) * unit.bar,
                                                    temperature * unit.kelvin, True, True, True, interval)
    raise SimulationError(f"barostat must be 'isotropic' or 'anisotropic', not {kind!r}")


def truncate_trajectory(path: str, frames: int) -> None:
    """Cut an OpenMM DCD file to its first ``frames`` frames and fix the header to match."""
    if not os.path.exists(path):
        raise SimulationError(f"{path} is missing but the checkpoint comes after {frames} frames; use "
                              f"--overwrite to start again")
    with open(path, "r+b") as dcd:
        head = dcd.read(100)
        if len(head) < 100 or head[4:8] != b"CORD":
            raise SimulationError(f"{path} is not a DCD file")
        first, interval = struct.unpack("<2i", head[12:20])
        has_box = struct.unpack("<i", head[48:52])[0]
        comments = struct.unpack("<i", head[92:96])[0]
        dcd.seek(104 + comments)
        n_atoms = struct.unpack("<i", dcd.read(4))[0]
        start = 104 + comments + 8
        frame = 56 * bool(has_box) + 3 * (8 + 4 * n_atoms)
        held = (os.path.getsize(path) - start) // frame
        if held < frames:
            raise SimulationError(f"{path} holds {held} frames, fewer than the {frames} written before the "
                                  f"checkpoint; use --overwrite to start again")
        dcd.truncate(start + frames * frame)
        dcd.seek(8)
        dcd.write(struct.pack("<i", frames))
        dcd.seek(20)
        dcd.write(struct.pack("<i", first + (frames - 1) * interval))


def truncate_log(path: str, step: int) -> None:
    """Keep the header and the complete rows of a ``log.csv`` up to ``step``."""
    with open(path) as log:
        lines = log.readlines()
    kept = [line for line in lines if line.endswith("\n") and (line.startswith("#") or
                                                                int(line.split(",")[0]) <= step)]
    with open(path, "w") as log:
        log.writelines(kept)


def last_line(error: Exception) -> str:
    """The final line of an error's message, without a TorchScript ``builtins.ValueError:``-style prefix
    (errors raised inside the TorchForce carry a TorchScript traceback above it)."""
    line = [text for text in str(error).splitlines() if text.strip()][-1]
    return re.sub(r"^builtins\.\w+: ", "", line)


class ProgressBar:
    """A reporter that moves a ``tqdm`` bar every ``interval`` steps."""

    def __init__(self, bar: tqdm, interval: int):
        self.bar, self.interval = bar, interval

    def describeNextReport(self, simulation):
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": None, "include": []}

    def report(self, simulation, state):
        self.bar.update(simulation.currentStep - self.bar.n)


class LineWriter:
    """A text stream printing whole lines through ``tqdm.write``, so they never cut a progress bar."""

    def __init__(self, stream):
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> None:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            tqdm.write(line, file=self.stream)

    def flush(self) -> None:
        self.stream.flush()


def load_checkpoint(output: str, settings: dict, overwrite: bool) -> Optional[openmm.State]:
    """The checkpointed ``State`` to continue from (after checking that the settings match), or None."""
    checkpoint, saved = (os.path.join(output, name) for name in (CHECKPOINT, SETTINGS))
    if overwrite or not os.path.exists(checkpoint):
        return None
    if not os.path.exists(saved):
        raise SimulationError(f"{output} holds a checkpoint but no {SETTINGS}: use --overwrite to start again")
    with open(saved) as file:
        saved = json.load(file)
    changed = [f"{key} {saved.get(key)!r} -> {settings[key]!r}" for key in RESUME_KEYS
               if saved.get(key) != settings[key]]
    if changed:
        raise SimulationError(f"{output} holds a run with other settings ({'; '.join(changed)}): choose "
                              f"another --output, or --overwrite to discard it")
    with open(checkpoint) as file:
        return openmm.XmlSerializer.deserialize(file.read())


def rms_force(simulation: app.Simulation) -> float:
    """Root mean square of all force components (kJ/mol/nm): the minimiser's convergence measure."""
    forces = simulation.context.getState(getForces=True).getForces(asNumpy=True)
    return float((forces.value_in_unit(unit.kilojoule_per_mole / unit.nanometer) ** 2).mean() ** 0.5)


def begin(simulation: app.Simulation, positions, output: str, minimize: int, temperature: float, seed: int,
          minimize_tolerance: float = MINIMIZE_TOLERANCE, stdout=None):
    """Minimise (at most ``minimize`` iterations, until the RMS force is below ``minimize_tolerance``
    kJ/mol/nm; a start already below it is kept as it is), draw velocities (K), write the topology file
    and the step-0 checkpoint."""
    simulation.context.setPositions(positions)
    if minimize:
        before = rms_force(simulation)
        if before <= minimize_tolerance:
            message = (f"start kept: RMS force {before:.0f} kJ/mol/nm, within --minimize-tolerance "
                       f"{minimize_tolerance:g}: not minimised")
        else:
            simulation.minimizeEnergy(tolerance=minimize_tolerance * unit.kilojoule_per_mole / unit.nanometer,
                                      maxIterations=minimize)
            message = (f"minimised: RMS force {before:.0f} -> {rms_force(simulation):.0f} kJ/mol/nm "
                       f"(--minimize-tolerance {minimize_tolerance:g}, at most {minimize} iterations)")
        print(message, file=stdout or sys.stdout, flush=True)
    simulation.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
    positions = simulation.context.getState(positions=True).getPositions()
    if simulation.topology.getNumAtoms() <= MAX_PDB_ATOMS:
        with open(os.path.join(output, TOPOLOGY), "w") as file:
            app.PDBFile.writeFile(simulation.topology, positions, file)
    else:
        with open(os.path.join(output, TOPOLOGY_PDBX), "w") as file:
            app.PDBxFile.writeFile(simulation.topology, positions, file)
    simulation.saveState(os.path.join(output, CHECKPOINT))


def resume(simulation: app.Simulation, state: openmm.State, output: str, trajectory_interval: int) -> None:
    """Load the checkpointed state and cut the trajectory and log back to its step."""
    simulation.context.setState(state)
    step = state.getStepCount()
    if trajectory_interval and step >= trajectory_interval:
        truncate_trajectory(os.path.join(output, TRAJECTORY), step // trajectory_interval)
    if os.path.exists(os.path.join(output, LOG)):
        truncate_log(os.path.join(output, LOG), step)


def add_reporters(simulation: app.Simulation, output: str, steps: int, report: int, trajectory_interval: int,
                  checkpoint_interval: int, stdout) -> tqdm:
    """Reporters for stdout, ``log.csv``, the trajectory, checkpoints and (on a terminal) a progress bar,
    appending to the files a continued run already has; returns the bar (to close)."""
    start = simulation.currentStep
    log = os.path.join(output, LOG)
    periodic = simulation.topology.getPeriodicBoxVectors() is not None
    simulation.reporters += [
        app.StateDataReporter(LineWriter(stdout), report, step=True, potentialEnergy=True, temperature=True,
                              speed=True, separator="\t"),
        app.StateDataReporter(log, report, step=True, time=True, potentialEnergy=True, kineticEnergy=True,
                              totalEnergy=True, temperature=True, volume=periodic, density=periodic, speed=True,
                              append=start > 0 and os.path.exists(log) and os.path.getsize(log) > 0),
    ]
    if trajectory_interval:
        simulation.reporters.append(app.DCDReporter(os.path.join(output, TRAJECTORY), trajectory_interval,
                                                    append=start >= trajectory_interval))
    simulation.reporters.append(app.CheckpointReporter(os.path.join(output, CHECKPOINT), checkpoint_interval,
                                                       writeState=True))
    bar = tqdm(total=steps, initial=start, unit="step", disable=None, dynamic_ncols=True)
    if not bar.disable:
        simulation.reporters.append(ProgressBar(bar, max(1, (steps - start) // 100)))
    return bar


def simulate(inputs: Sequence[str], output: Optional[str] = None, model: str = "carbonates-xtb",
             grains: str = "residue", ensemble: str = "NVT", temperature: float = 300.0,
             timestep: float = 0.5, friction: float = 1.0, pressure: float = 1.0, barostat: str = "isotropic",
             barostat_interval: int = 25, steps: int = 1000, platform: str = "CPU",
             threads: Optional[int] = None, minimize: int = 100,
             minimize_tolerance: float = MINIMIZE_TOLERANCE, report: int = 100,
             trajectory_interval: int = 100, checkpoint_interval: int = 500, seed: int = 1,
             overwrite: bool = False, precision: Optional[str] = None, hydrogen_mass: Optional[float] = None,
             density_correction: Optional[str] = None, stdout=None) -> str:
    """Run (or continue) MD until step ``steps``; returns the output directory.

    Units: K, fs, 1/ps, bar, kJ/mol/nm. ``minimize`` is the most minimiser iterations (0: none); the
    minimiser stops once the RMS force is below ``minimize_tolerance`` and leaves a start already below it,
    such as an equilibrated frame, untouched. Velocities are drawn at ``temperature``. ``output`` defaults to ``<input name>-md`` in the
    working directory; ``report``, ``trajectory_interval`` (0: no trajectory) and
    ``checkpoint_interval`` are in steps; ``barostat_interval`` is the number of
    steps between Monte Carlo volume moves (NPT). ``seed`` seeds the velocities,
    and, offset by the start step, the Langevin and barostat random numbers. ``precision``
    (:meth:`~cgaa_openmm.CGAAPotential.createModule`) defaults to the platform's own: ``"double"``
    on Reference, ``"single"`` on CPU (1.5-1.8x faster than the float64 model openmm-torch's
    float64 positions would select there), ``"auto"`` on OpenCL and CUDA (their ``Precision``).
    ``hydrogen_mass`` (Da) repartitions hydrogen masses (``createSystem``'s ``hydrogenMass``): 3 Da
    allows 2 fs steps (docs/simulate.md). ``density_correction`` names an opt-in correction of the
    model (``createSystem``'s ``densityCorrection``, :mod:`cgaa_openmm.correction`); it needs a box.
    """
    from .modelfile import ModelFileError
    from .potential import CGAAPotential

    stdout = stdout or sys.stdout
    inputs = list(inputs)
    if ensemble not in ENSEMBLES:
        raise SimulationError(f"ensemble must be one of {', '.join(ENSEMBLES)}, not {ensemble!r}")
    for key, value, least in (("steps", steps, 0), ("report", report, 1), ("trajectory_interval",
                              trajectory_interval, 0), ("checkpoint_interval", checkpoint_interval, 1),
                              ("barostat_interval", barostat_interval, 1)):
        if value < least:
            raise SimulationError(f"{key} must be at least {least}, not {value}")
    if minimize_tolerance <= 0:
        raise SimulationError(f"minimize_tolerance must be positive, not {minimize_tolerance} kJ/mol/nm")
    if timestep <= 0:
        raise SimulationError(f"timestep must be positive, not {timestep} fs")
    topology, positions = read_structure(inputs)
    name = " + ".join(inputs)
    if ensemble == "NPT" and topology.getPeriodicBoxVectors() is None:
        raise SimulationError(f"NPT needs a periodic box, and {name} has none (PDB: a CRYST1 record)")
    platform, properties = get_platform(platform, threads)
    if threads:
        import torch
        torch.set_num_threads(threads)

    output = output or os.path.splitext(os.path.basename(inputs[0]))[0] + "-md"
    settings = dict(inputs=[os.path.basename(p) for p in inputs], atoms=topology.getNumAtoms(), model=model,
                    grains=grains, ensemble=ensemble, temperature=temperature, timestep=timestep,
                    friction=None if ensemble == "NVE" else friction,
                    pressure=pressure if ensemble == "NPT" else None,
                    barostat=barostat if ensemble == "NPT" else None,
                    barostat_interval=barostat_interval if ensemble == "NPT" else None,
                    trajectory_interval=trajectory_interval, hydrogen_mass=hydrogen_mass,
                    density_correction=density_correction)
    state = load_checkpoint(output, settings, overwrite)
    start = state.getStepCount() if state else 0
    if state and start >= steps:
        print(f"{output} already holds {start} steps (--steps {steps}): nothing to do", file=stdout)
        return output

    try:
        potential = CGAAPotential.load(model)
    except (FileNotFoundError, ModelFileError) as error:
        raise SimulationError(str(error)) from error
    try:
        if precision is None:
            precision = PLATFORM_PRECISION.get(platform.getName(), "auto")
        system = potential.createSystem(topology, grains=grains, precision=precision, hydrogenMass=hydrogen_mass,
                                        positions=positions, densityCorrection=density_correction)
    except ValueError as error:             # TopologyMismatchError, box too small, bad grains
        raise SimulationError(f"{name}: {error}") from error
    integrator = make_integrator(ensemble, temperature, timestep, friction)
    if ensemble != "NVE":                   # a continued run draws new random numbers, not a replay
        integrator.setRandomNumberSeed(seed + start)
    if ensemble == "NPT":
        system.addForce(make_barostat(barostat, pressure, temperature, barostat_interval))
        system.getForce(system.getNumForces() - 1).setRandomNumberSeed(seed + start)
    try:
        simulation = app.Simulation(topology, system, integrator, platform, properties)
    except openmm.OpenMMException as error:
        raise SimulationError(f"platform {platform.getName()} cannot run this system: {error}") from error
    print(f"{name}: {topology.getNumAtoms()} atoms, {ensemble} at {temperature} K, model {model!r} "
          f"({grains} grains) on {platform.getName()}; output in {output}/", file=stdout, flush=True)

    if state:
        resume(simulation, state, output, trajectory_interval)
        print(f"resumed from step {start} ({os.path.join(output, CHECKPOINT)})", file=stdout, flush=True)
    else:
        os.makedirs(output, exist_ok=True)
        if os.path.exists(os.path.join(output, CHECKPOINT)):
            os.remove(os.path.join(output, CHECKPOINT))
        with open(os.path.join(output, SETTINGS), "w") as file:
            json.dump(settings, file, indent=1)
        begin(simulation, positions, output, minimize, temperature, seed, minimize_tolerance, stdout)
        if not steps:
            return output
    bar = add_reporters(simulation, output, steps, report, trajectory_interval, checkpoint_interval, stdout)
    try:
        simulation.step(steps - start)
    except openmm.OpenMMException as error:
        raise SimulationError(f"MD stopped at step {simulation.currentStep}: {last_line(error)} (the last "
                              f"checkpoint in {output} is kept)") from error
    finally:
        bar.close()
    simulation.saveState(os.path.join(output, CHECKPOINT))
    return output
