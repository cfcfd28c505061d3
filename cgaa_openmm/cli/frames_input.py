"""Input checks shared by the subcommands that read a topology and its trajectory."""
import os
import sys


def require_frames(args, command: str) -> None:
    """Exit with a clear message if the topology or trajectory of ``command`` does not exist."""
    for path in [args.topology] + ([args.trajectory] if args.trajectory else []):
        if not os.path.exists(path):
            sys.exit(f"cgaa-openmm {command}: file not found: {path}")
