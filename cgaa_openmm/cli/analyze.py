"""``cgaa-openmm analyze``: RDFs and density of a trajectory (:func:`cgaa_openmm.analysis.analyze`)."""
import sys

HELP = "RDFs and density of a trajectory (PNG, CSV, JSON)"
DESCRIPTION = ("Radial distribution functions between molecule centres of mass (per pair of residue names) and "
               "between selected atoms, and the density of every frame; writes rdf.png, rdf.csv, density.png, "
               "density.csv and analysis.json.")


def add_arguments(parser) -> None:
    parser.add_argument("trajectory", help="DCD (or any trajectory mdtraj reads)")
    parser.add_argument("--top", help="topology with bonds, e.g. PDB (default: topology.pdb or topology.cif "
                                      "beside the trajectory, as cgaa-openmm simulate writes them)")
    parser.add_argument("--pair", action="append", nargs="+", metavar="SELECTION", default=[],
                        help="RDF between the atoms of one or two mdtraj selections, e.g. "
                             "'(resname EC and name C2) or (resname EMC and name C1)'; repeatable")
    parser.add_argument("--r-max", type=float, help="nm (default: half the narrowest box width)")
    parser.add_argument("--bin-width", type=float, default=0.01, help="nm")
    parser.add_argument("--skip", type=int, default=0,
                        help="frames left out of the RDFs and the mean density (equilibration)")
    parser.add_argument("--output", help="directory for the plots and numbers (default: the trajectory's)")


def run(args) -> None:
    from ..analysis import AnalysisError, analyze
    options = {key: value for key, value in vars(args).items() if key not in ("command", "run", "trajectory")}
    try:
        analyze(args.trajectory, **options)
    except AnalysisError as error:
        sys.exit(f"cgaa-openmm analyze: {error}")
