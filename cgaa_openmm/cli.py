"""The ``cgaa-openmm`` command: ``simulate`` (MD with a CGAA model), ``analyze``, ``train``, ``evaluate``,
and the data makers ``clusters``, ``boxes`` and ``label``."""
import argparse
import os
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_systems", "ecemc.pdb")


def run_simulation(args) -> None:
    """Run or continue MD (options: ``simulate.simulate``)."""
    from .simulate import SimulationError, simulate
    options = {key: value for key, value in vars(args).items() if key not in ("command", "run", "input")}
    try:
        simulate(args.input, **options)
    except SimulationError as error:
        sys.exit(f"cgaa-openmm simulate: {error}")


def run_analysis(args) -> None:
    """RDFs and density of a trajectory (options: ``analysis.analyze``)."""
    from .analysis import AnalysisError, analyze
    options = {key: value for key, value in vars(args).items() if key not in ("command", "run", "trajectory")}
    try:
        analyze(args.trajectory, **options)
    except AnalysisError as error:
        sys.exit(f"cgaa-openmm analyze: {error}")


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


def run_generation(args) -> None:
    """Sample a peptide with amber14 MD and label the frames with GFN2-xTB (options: ``training.peptides``)."""
    from training.label import LabelError
    from training.peptides import GenerationError, main
    try:
        main(args)
    except (GenerationError, LabelError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm generate-data: {error}")


def require_frames(args, command: str) -> None:
    """Exit with a clear message if the topology or trajectory of ``command`` does not exist."""
    for path in [args.topology] + ([args.trajectory] if args.trajectory else []):
        if not os.path.exists(path):
            sys.exit(f"cgaa-openmm {command}: file not found: {path}")


def run_clusters(args) -> None:
    """Cut clusters from a liquid's frames (``training.clusters.liquid_clusters``)."""
    from ase.io import write

    from training.clusters import liquid_clusters
    require_frames(args, "clusters")
    clusters = liquid_clusters(args.topology, args.trajectory, args.n, args.radius, args.max_molecules,
                               seed=args.seed, scale=tuple(args.scale), skip=args.skip, prefix=args.prefix)
    write(args.output, clusters, format="extxyz")
    print(f"{len(clusters)} clusters ({sum(len(c) for c in clusters)} atoms) -> {args.output}")


def run_boxes(args) -> None:
    """Periodic liquid frames, rigidly rescaled (``training.boxes.liquid_boxes``)."""
    from ase.io import write

    from training.boxes import liquid_boxes
    require_frames(args, "boxes")
    try:
        boxes = liquid_boxes(args.topology, args.trajectory, args.n, scale=tuple(args.scale), seed=args.seed,
                             skip=args.skip, prefix=args.prefix, min_edge=args.min_edge)
    except ValueError as error:
        sys.exit(f"cgaa-openmm boxes: {error}")
    write(args.output, boxes, format="extxyz")
    print(f"{len(boxes)} boxes ({len(boxes[0])} atoms each) -> {args.output}")


def run_frames(args) -> None:
    """A region of a trajectory's frames with residue grains (``training.peptides.trajectory_configurations``)."""
    from ase.io import write

    from training.peptides import GenerationError, trajectory_configurations
    require_frames(args, "frames")
    try:
        configs = trajectory_configurations(args.topology, args.trajectory, args.select, skip=args.skip,
                                            stride=args.stride, prefix=args.prefix, rattle=args.rattle,
                                            charge=args.charge, seed=args.seed)
    except GenerationError as error:
        sys.exit(f"cgaa-openmm frames: {error}")
    write(args.output, configs, format="extxyz")
    print(f"{len(configs)} configurations ({len(configs[0])} atoms each) -> {args.output}")


def run_labelling(args) -> None:
    """GFN2-xTB energies and forces with tblite (``training.label``)."""
    from training.label import LabelError, main as label_main
    try:
        label_main(args)
    except LabelError as error:
        sys.exit(f"cgaa-openmm label: {error}")


def main(argv=None) -> None:
    from .simulate import MINIMIZE_TOLERANCE
    parser = argparse.ArgumentParser(prog="cgaa-openmm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser(
        "simulate", help="run MD with a CGAA model (defaults: the bundled EC/EMC box)",
        description="Minimise (unless the start's forces are already thermal), draw velocities at the "
                    "temperature, then run NVE/NVT/NPT MD; writes trajectory.dcd, log.csv, checkpoint.xml and "
                    "topology.pdb to the output directory. Run the same command again to continue from the "
                    "last checkpoint (--steps is the total).")
    sim.add_argument("input", nargs="*", default=[EXAMPLE],
                     help="a PDB/PDBx file with box vectors, or a topology and its coordinates: AMBER "
                          ".prmtop/.parm7 + .inpcrd/.rst7, GROMACS .top + .gro")
    sim.add_argument("--model", default="carbonates-xtb", help="model file or shipped model name")
    sim.add_argument("--grains", default="residue", choices=["residue", "molecule", "atom"])
    sim.add_argument("--ensemble", default="NVT", choices=["NVE", "NVT", "NPT"],
                     help="NVE: velocity Verlet; NVT: Langevin; NPT: Langevin + Monte Carlo barostat")
    sim.add_argument("--steps", type=int, default=1000, help="total steps (a continued run stops here too)")
    sim.add_argument("--timestep", type=float, default=0.5, help="fs")
    sim.add_argument("--temperature", type=float, default=300.0, help="K")
    sim.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps")
    sim.add_argument("--pressure", type=float, default=1.0, help="NPT pressure, bar")
    sim.add_argument("--barostat", default="isotropic", choices=["isotropic", "anisotropic"])
    sim.add_argument("--barostat-interval", type=int, default=25, help="steps between NPT volume moves")
    sim.add_argument("--platform", default="CPU", help="OpenMM platform: Reference, CPU, OpenCL, CUDA")
    sim.add_argument("--threads", type=int, help="CPU threads for torch and the CPU platform")
    sim.add_argument("--precision", choices=["auto", "single", "double"],
                     help="the model's float precision (default: double on Reference, single on CPU, the "
                          "platform's Precision property on OpenCL and CUDA)")
    sim.add_argument("--minimize", type=int, default=100, help="most minimiser iterations before MD (0: none)")
    sim.add_argument("--minimize-tolerance", type=float, default=MINIMIZE_TOLERANCE,
                     help="kJ/mol/nm: the minimiser stops at this RMS force, and a start already below it "
                          "(thermal forces, e.g. the equilibrated example box) is not minimised")
    sim.add_argument("--report", type=int, default=100, help="steps between lines on stdout and in log.csv")
    sim.add_argument("--trajectory-interval", type=int, default=100, help="steps between DCD frames (0: none)")
    sim.add_argument("--checkpoint-interval", type=int, default=500, help="steps between checkpoints")
    sim.add_argument("--output", help="output directory (default: INPUT-md, INPUT the input's name)")
    sim.add_argument("--overwrite", action="store_true", help="start afresh, discarding a run in --output")
    sim.add_argument("--seed", type=int, default=1, help="velocities; Langevin and barostat random numbers")
    sim.set_defaults(run=run_simulation)

    analyze = commands.add_parser(
        "analyze", help="RDFs and density of a trajectory (PNG, CSV, JSON)",
        description="Radial distribution functions between molecule centres of mass (per pair of residue "
                    "names) and between selected atoms, and the density of every frame; writes rdf.png, "
                    "rdf.csv, density.png, density.csv and analysis.json.")
    analyze.add_argument("trajectory", help="DCD (or any trajectory mdtraj reads)")
    analyze.add_argument("--top", help="topology with bonds, e.g. PDB (default: topology.pdb or topology.cif "
                                       "beside the trajectory, as cgaa-openmm simulate writes them)")
    analyze.add_argument("--pair", action="append", nargs="+", metavar="SELECTION", default=[],
                         help="RDF between the atoms of one or two mdtraj selections, e.g. "
                              "'(resname EC and name C2) or (resname EMC and name C1)'; repeatable")
    analyze.add_argument("--r-max", type=float, help="nm (default: half the narrowest box width)")
    analyze.add_argument("--bin-width", type=float, default=0.01, help="nm")
    analyze.add_argument("--skip", type=int, default=0, help="frames left out of the RDFs and the mean density (equilibration)")
    analyze.add_argument("--output", help="directory for the plots and numbers (default: the trajectory's)")
    analyze.set_defaults(run=run_analysis)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.set_defaults(run=run_training)

    from training.evaluate import add_arguments
    evaluate = commands.add_parser("evaluate", help="errors of a model on labelled data, with a parity plot")
    add_arguments(evaluate)
    evaluate.set_defaults(run=run_evaluation)

    from training.peptides import add_arguments as add_generation_arguments
    generate = commands.add_parser(
        "generate-data", help="GFN2-xTB data of a peptide: amber14 MD, residue grains, tblite labels",
        description="Sample a capped peptide with OpenMM (amber14, implicit or explicit water, several "
                    "temperatures and seeds), cut each frame (peptide alone or with its nearest waters), "
                    "label it with GFN2-xTB (tblite) and append it to an extended XYZ file with a per-atom "
                    "'residue' column (the grain). Run the same command again to resume.")
    add_generation_arguments(generate)
    generate.set_defaults(run=run_generation)

    clusters = commands.add_parser(
        "clusters", help="cut molecule clusters from liquid frames (extended XYZ with molID, for labelling)",
        description="Random centre molecules of random frames, each with the whole molecules that have an "
                    "atom within --radius of it; optionally pulled towards the centre (--scale).")
    clusters.add_argument("topology", help="PDB with bonds (e.g. topology.pdb written by simulate)")
    clusters.add_argument("trajectory", nargs="?", help="DCD or other mdtraj trajectory (default: the "
                                                        "topology's coordinates)")
    clusters.add_argument("-o", "--output", required=True, help="extended XYZ to write")
    clusters.add_argument("--n", type=int, default=100, help="number of clusters")
    clusters.add_argument("--radius", type=float, default=3.0, help="Å, closest-atom distance to the centre")
    clusters.add_argument("--max-molecules", type=int, default=5, help="neighbour molecules kept, nearest first")
    clusters.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                          help="neighbour centre-of-mass distances to the centre are multiplied by a "
                               "factor drawn from [MIN, MAX] (rigid molecules)")
    clusters.add_argument("--skip", type=int, default=0, help="leading frames not used")
    clusters.add_argument("--seed", type=int, default=0)
    clusters.add_argument("--prefix", default="cluster", help="label_id prefix (unique across files)")
    clusters.set_defaults(run=run_clusters)

    boxes = commands.add_parser(
        "boxes", help="periodic liquid frames, rigidly rescaled like a barostat move (extended XYZ, for labelling)",
        description="Random frames of a periodic liquid; each frame's molecule centres and box are scaled by "
                    "a factor drawn from --scale, molecules kept rigid (the move of a Monte Carlo barostat).")
    boxes.add_argument("topology", help="PDB with bonds and box (e.g. topology.pdb written by simulate)")
    boxes.add_argument("trajectory", nargs="?", help="DCD or other mdtraj trajectory (default: the "
                                                     "topology's coordinates)")
    boxes.add_argument("-o", "--output", required=True, help="extended XYZ to write")
    boxes.add_argument("--n", type=int, default=50, help="number of boxes")
    boxes.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                       help="length scale factor range (0.97 1.10: about 1.1x to 0.75x the density)")
    boxes.add_argument("--min-edge", type=float, default=0.0,
                       help="Å; refuse boxes with a shorter edge (twice the model's cutoff)")
    boxes.add_argument("--skip", type=int, default=0, help="leading frames not used")
    boxes.add_argument("--seed", type=int, default=0)
    boxes.add_argument("--prefix", default="box", help="label_id prefix (unique across files)")
    boxes.set_defaults(run=run_boxes)

    frames = commands.add_parser(
        "frames", help="a region (e.g. the ML region) of trajectory frames, residue grains (extended XYZ, for labelling)",
        description="The atoms of an mdtraj selection in frames of a trajectory, e.g. the peptide of an ML/MM "
                    "run, with a per-atom 'residue' column (the grain): the model's own configurations, to "
                    "label and add to its training data.")
    frames.add_argument("topology", help="PDB with bonds (e.g. topology.pdb written beside the trajectory)")
    frames.add_argument("trajectory", help="DCD or other mdtraj trajectory")
    frames.add_argument("-o", "--output", required=True, help="extended XYZ to write")
    frames.add_argument("--select", default="protein", help="mdtraj selection of the region (whole molecules)")
    frames.add_argument("--skip", type=int, default=0, help="leading frames not used")
    frames.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    frames.add_argument("--rattle", type=float, default=0.0, help="Å; add a Gaussian-displaced copy of every frame")
    frames.add_argument("--charge", type=int, default=0, help="net charge of the region (e)")
    frames.add_argument("--seed", type=int, default=0, help="seed of the rattle")
    frames.add_argument("--prefix", default="frame", help="label_id prefix (unique across files)")
    frames.set_defaults(run=run_frames)

    from training.label import add_arguments as label_arguments
    labelling = commands.add_parser("label", help="GFN2-xTB energies and forces with tblite (resumable)")
    label_arguments(labelling)
    labelling.set_defaults(run=run_labelling)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
