"""The ``cgaa-openmm`` command: the one place where the runtime and ``training`` meet.

Every subcommand is a module of this package with ``HELP`` (one line), an optional
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args)``. Only the chosen subcommand's
arguments are built, so ``simulate`` and ``analyze`` never import ``training`` (which need not
be installed for them), and the training and data-making subcommands load it when they run.
"""
import argparse
import importlib
import sys
from typing import List, Optional

#: Subcommand -> its module in this package.
COMMANDS = {
    "simulate": "simulate",
    "analyze": "analyze",
    "train": "train",
    "evaluate": "evaluate",
    "generate-data": "generate_data",
    "clusters": "clusters",
    "boxes": "boxes",
    "frames": "frames",
    "label": "label",
}


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="cgaa-openmm", description="Coarse-grained all-atom ML force fields for OpenMM: MD, analysis, "
                                        "training and training data.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{module_name}")
        sub = commands.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        if name == chosen:
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    args.run(args)
