"""``cgaa-openmm frames``: a region of trajectory frames with residue grains
(``training.datagen.peptides.trajectory_configurations``)."""
import sys

from .frames_input import add_frames_arguments, add_sampling_arguments, require_frames

HELP = "a region (e.g. the ML region) of trajectory frames, residue grains (extended XYZ, for labelling)"
DESCRIPTION = ("The atoms of an mdtraj selection in frames of a trajectory, e.g. the peptide of an ML/MM run, with "
               "a per-atom 'residue' column (the grain): the model's own configurations, to label and add to its "
               "training data.")


def add_arguments(parser) -> None:
    add_frames_arguments(parser, "PDB with bonds (e.g. topology.pdb written beside the trajectory)",
                         trajectory_required=True)
    parser.add_argument("--select", default="protein", help="mdtraj selection of the region (whole molecules)")
    parser.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    parser.add_argument("--rattle", type=float, default=0.0, help="Å; add a Gaussian-displaced copy of every frame")
    parser.add_argument("--charge", type=int, default=0, help="net charge of the region (e)")
    add_sampling_arguments(parser, "frame", seed_help="seed of the rattle")


def run(args) -> None:
    from ase.io import write

    from training.datagen.peptides import GenerationError, trajectory_configurations
    require_frames(args, "frames")
    try:
        configs = trajectory_configurations(args.topology, args.trajectory, args.select, skip=args.skip,
                                            stride=args.stride, prefix=args.prefix, rattle=args.rattle,
                                            charge=args.charge, seed=args.seed)
    except GenerationError as error:
        sys.exit(f"cgaa-openmm frames: {error}")
    write(args.output, configs, format="extxyz")
    print(f"{len(configs)} configurations ({len(configs[0])} atoms each) -> {args.output}")
