"""The ``cgaa-openmm`` command: ``simulate`` (MD with a CGAA model), ``train`` and ``evaluate``."""
import argparse
import os
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_systems", "ecemc.pdb")


def simulate(args) -> None:
    """Minimise, then run Langevin NVT MD, reporting step, energy, temperature and ns/day."""
    import openmm
    from openmm import app, unit

    from .potential import CGAAPotential

    if not os.path.exists(args.input):
        sys.exit(f"cgaa-openmm simulate: input file not found: {args.input}")
    structure = app.PDBxFile(args.input) if args.input.endswith((".cif", ".pdbx")) else app.PDBFile(args.input)
    potential = CGAAPotential.load(args.model)
    system = potential.createSystem(structure.topology, grains=args.grains)
    integrator = openmm.LangevinMiddleIntegrator(args.temperature * unit.kelvin, args.friction / unit.picosecond,
                                                 args.timestep * unit.femtosecond)
    try:
        platform = openmm.Platform.getPlatformByName(args.platform)
    except openmm.OpenMMException:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        sys.exit(f"cgaa-openmm simulate: platform {args.platform!r} is not available here (available: {names})")
    simulation = app.Simulation(structure.topology, system, integrator, platform)
    simulation.context.setPositions(structure.positions)
    print(f"{args.input}: {structure.topology.getNumAtoms()} atoms, "
          f"{system.getForce(0).getName()} model {args.model!r} on {platform.getName()}", flush=True)
    if args.minimize:
        simulation.minimizeEnergy(maxIterations=args.minimize)
    simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed)
    simulation.reporters.append(app.StateDataReporter(
        sys.stdout, args.report, step=True, potentialEnergy=True, temperature=True, speed=True,
        separator="\t"))
    if args.trajectory:
        simulation.reporters.append(app.DCDReporter(args.trajectory, args.report))
    simulation.step(args.steps)


def run_training(args) -> None:
    """Train and export a model as the YAML config says (options: ``training.config``)."""
    from training.config import ConfigError, load_config
    from training.data import DataError
    from training.train import train
    try:
        train(load_config(args.config), resume=args.resume)
    except (ConfigError, DataError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm train: {error}")


def run_evaluation(args) -> None:
    """Metrics of a model on labelled data, and a parity plot."""
    from training.data import DataError
    from training.evaluate import run

    from .modelfile import ModelFileError
    try:
        run(args)
    except (DataError, ModelFileError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm evaluate: {error}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="cgaa-openmm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="run MD with a CGAA model (defaults: the bundled EC/EMC box)")
    sim.add_argument("input", nargs="?", default=EXAMPLE, help="PDB or PDBx file with box vectors")
    sim.add_argument("--model", default="carbonates-xtb", help="model file or shipped model name")
    sim.add_argument("--grains", default="residue", choices=["residue", "molecule", "atom"])
    sim.add_argument("--steps", type=int, default=1000)
    sim.add_argument("--timestep", type=float, default=0.5, help="fs")
    sim.add_argument("--temperature", type=float, default=300.0, help="K")
    sim.add_argument("--friction", type=float, default=1.0, help="1/ps")
    sim.add_argument("--platform", default="CPU")
    sim.add_argument("--minimize", type=int, default=100, help="minimiser iterations before MD (0: none)")
    sim.add_argument("--report", type=int, default=100, help="steps between reports")
    sim.add_argument("--trajectory", help="DCD file to write")
    sim.add_argument("--seed", type=int, default=1)
    sim.set_defaults(run=simulate)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.set_defaults(run=run_training)

    from training.evaluate import add_arguments
    evaluate = commands.add_parser("evaluate", help="errors of a model on labelled data, with a parity plot")
    add_arguments(evaluate)
    evaluate.set_defaults(run=run_evaluation)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
