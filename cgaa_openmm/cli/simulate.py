"""``cgaa-openmm simulate``: MD with a CGAA model (:func:`cgaa_openmm.simulate.simulate`)."""
import sys

HELP = "run MD with a CGAA model (defaults: the bundled EC/EMC box)"
DESCRIPTION = ("Minimise (unless the start's forces are already thermal), draw velocities at the temperature, "
               "then run NVE/NVT/NPT MD; writes trajectory.dcd, log.csv, checkpoint.xml and topology.pdb to the "
               "output directory. Run the same command again to continue from the last checkpoint (--steps is "
               "the total).")


def add_arguments(parser) -> None:
    from ..data import EXAMPLE_BOX
    from ..simulate import MINIMIZE_TOLERANCE
    parser.add_argument("input", nargs="*", default=[EXAMPLE_BOX],
                        help="a PDB/PDBx file with box vectors, or a topology and its coordinates: AMBER "
                             ".prmtop/.parm7 + .inpcrd/.rst7, GROMACS .top + .gro (default: the bundled "
                             "EC/EMC box)")
    parser.add_argument("--model", default="carbonates-xtb", help="model file or shipped model name")
    parser.add_argument("--grains", default="residue", choices=["residue", "molecule", "atom"])
    parser.add_argument("--ensemble", default="NVT", choices=["NVE", "NVT", "NPT"],
                        help="NVE: velocity Verlet; NVT: Langevin; NPT: Langevin + Monte Carlo barostat")
    parser.add_argument("--steps", type=int, default=1000, help="total steps (a continued run stops here too)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps")
    parser.add_argument("--pressure", type=float, default=1.0, help="NPT pressure, bar")
    parser.add_argument("--barostat", default="isotropic", choices=["isotropic", "anisotropic"])
    parser.add_argument("--barostat-interval", type=int, default=25, help="steps between NPT volume moves")
    parser.add_argument("--hydrogen-mass", type=float,
                        help="Da: repartition hydrogen masses (taken from the bonded heavy atom), e.g. 3 for 2 fs "
                             "steps (default: the elements' masses)")
    parser.add_argument("--density-correction", metavar="NAME",
                        help="an opt-in density correction stored with the model, e.g. experiment for "
                             "carbonates-xtb (default: none, the model as trained)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform: Reference, CPU, OpenCL, CUDA")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and the CPU platform")
    parser.add_argument("--precision", choices=["auto", "single", "double"],
                        help="the model's float precision (default: double on Reference, single on CPU, the "
                             "platform's Precision property on OpenCL and CUDA)")
    parser.add_argument("--minimize", type=int, default=100, help="most minimiser iterations before MD (0: none)")
    parser.add_argument("--minimize-tolerance", type=float, default=MINIMIZE_TOLERANCE,
                        help="kJ/mol/nm: the minimiser stops at this RMS force, and a start already below it "
                             "(thermal forces, e.g. the equilibrated example box) is not minimised")
    parser.add_argument("--report", type=int, default=100, help="steps between lines on stdout and in log.csv")
    parser.add_argument("--trajectory-interval", type=int, default=100, help="steps between DCD frames (0: none)")
    parser.add_argument("--checkpoint-interval", type=int, default=500, help="steps between checkpoints")
    parser.add_argument("--output", help="output directory (default: INPUT-md, INPUT the input's name)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh, discarding a run in --output")
    parser.add_argument("--seed", type=int, default=1, help="velocities; Langevin and barostat random numbers")


def run(args) -> None:
    from ..simulate import SimulationError, simulate
    options = {key: value for key, value in vars(args).items() if key not in ("command", "run", "input")}
    try:
        simulate(args.input, **options)
    except SimulationError as error:
        sys.exit(f"cgaa-openmm simulate: {error}")
