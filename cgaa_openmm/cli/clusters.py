"""``cgaa-openmm clusters``: molecule clusters cut from liquid frames (``training.datagen.clusters``)."""
from .frames_input import add_frames_arguments, add_sampling_arguments, require_frames

HELP = "cut molecule clusters from liquid frames (extended XYZ with molID, for labelling)"
DESCRIPTION = ("Random centre molecules of random frames, each with the whole molecules that have an atom within "
               "--radius of it; optionally pulled towards the centre (--scale).")


def add_arguments(parser) -> None:
    add_frames_arguments(parser, "PDB with bonds (e.g. topology.pdb written by simulate)")
    parser.add_argument("--n", type=int, default=100, help="number of clusters")
    parser.add_argument("--radius", type=float, default=3.0, help="Å, closest-atom distance to the centre")
    parser.add_argument("--max-molecules", type=int, default=5, help="neighbour molecules kept, nearest first")
    parser.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                        help="neighbour centre-of-mass distances to the centre are multiplied by a "
                             "factor drawn from [MIN, MAX] (rigid molecules)")
    add_sampling_arguments(parser, "cluster")


def run(args) -> None:
    from ase.io import write

    from training.datagen.clusters import liquid_clusters
    require_frames(args, "clusters")
    clusters = liquid_clusters(args.topology, args.trajectory, args.n, args.radius, args.max_molecules,
                               seed=args.seed, scale=tuple(args.scale), skip=args.skip, prefix=args.prefix)
    write(args.output, clusters, format="extxyz")
    print(f"{len(clusters)} clusters ({sum(len(c) for c in clusters)} atoms) -> {args.output}")
