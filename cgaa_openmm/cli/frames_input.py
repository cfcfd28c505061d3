"""Arguments and input checks of the subcommands that read a topology and its trajectory
(``clusters``, ``boxes``, ``frames``)."""
import os
import sys


def require_frames(args, command: str) -> None:
    """Exit with a clear message if the topology or trajectory of ``command`` does not exist."""
    for path in [args.topology] + ([args.trajectory] if args.trajectory else []):
        if not os.path.exists(path):
            sys.exit(f"cgaa-openmm {command}: file not found: {path}")


def add_frames_arguments(parser, topology_help: str, trajectory_required: bool = False) -> None:
    """The topology, its trajectory and the extended XYZ file to write."""
    parser.add_argument("topology", help=topology_help)
    if trajectory_required:
        parser.add_argument("trajectory", help="DCD or other mdtraj trajectory")
    else:
        parser.add_argument("trajectory", nargs="?",
                            help="DCD or other mdtraj trajectory (default: the topology's coordinates)")
    parser.add_argument("-o", "--output", required=True, help="extended XYZ to write")


def add_sampling_arguments(parser, prefix: str, seed_help: str = "random seed") -> None:
    """Leading frames skipped, the seed, and the ``label_id`` prefix of what is written."""
    parser.add_argument("--skip", type=int, default=0, help="leading frames not used")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--prefix", default=prefix, help="label_id prefix (unique across files)")
