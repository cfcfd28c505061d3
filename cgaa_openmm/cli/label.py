"""``cgaa-openmm label``: GFN2-xTB energies and forces with tblite (``training.datagen.label``)."""
import sys

HELP = "GFN2-xTB energies and forces with tblite (resumable)"


def add_arguments(parser) -> None:
    from training.datagen.label import add_arguments as label_arguments
    label_arguments(parser)


def run(args) -> None:
    from training.datagen.label import LabelError, main
    try:
        main(args)
    except LabelError as error:
        sys.exit(f"cgaa-openmm label: {error}")
