"""``cgaa-openmm boxes``: periodic liquid frames, rigidly rescaled (``training.datagen.boxes``)."""
import sys

from .frames_input import add_frames_arguments, add_sampling_arguments, require_frames

HELP = "periodic liquid (or crystal cell) frames, rigidly rescaled like a barostat move (extended XYZ, for labelling)"
DESCRIPTION = ("Random frames of a periodic liquid; each frame's molecule centres and box are scaled by a factor "
               "drawn from --scale, molecules kept rigid (the move of a Monte Carlo barostat).")


def add_arguments(parser) -> None:
    add_frames_arguments(parser, "PDB with bonds and box (e.g. topology.pdb written by simulate)")
    parser.add_argument("--n", type=int, default=50, help="number of boxes")
    parser.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                        help="length scale factor range (0.97 1.10: about 1.1x to 0.75x the density)")
    parser.add_argument("--min-edge", type=float, default=0.0,
                        help="Å; refuse boxes with a shorter edge (twice the model's cutoff)")
    parser.add_argument("--subcells", type=int, nargs=3, metavar=("A", "B", "C"),
                        help="the trajectory is a crystal supercell of A x B x C cells: write one cell per box")
    add_sampling_arguments(parser, "box")


def run(args) -> None:
    from ase.io import write

    from training.datagen.boxes import liquid_boxes
    require_frames(args, "boxes")
    try:
        boxes = liquid_boxes(args.topology, args.trajectory, args.n, scale=tuple(args.scale), seed=args.seed,
                             skip=args.skip, prefix=args.prefix, min_edge=args.min_edge,
                             subcells=args.subcells)
    except ValueError as error:
        sys.exit(f"cgaa-openmm boxes: {error}")
    write(args.output, boxes, format="extxyz")
    print(f"{len(boxes)} boxes ({len(boxes[0])} atoms each) -> {args.output}")
