"""``cgaa-openmm generate-data``: GFN2-xTB data of a peptide (``training.datagen.peptides``)."""
import sys

HELP = "GFN2-xTB data of a peptide: amber14 MD, residue grains, tblite labels"
DESCRIPTION = ("Sample a capped peptide with OpenMM (amber14, implicit or explicit water, several temperatures and "
               "seeds), cut each frame (peptide alone or with its nearest waters), label it with GFN2-xTB (tblite) "
               "and append it to an extended XYZ file with a per-atom 'residue' column (the grain). Run the same "
               "command again to resume.")


def add_arguments(parser) -> None:
    from training.datagen.peptides import add_arguments as generation_arguments
    generation_arguments(parser)


def run(args) -> None:
    from training.datagen.label import LabelError
    from training.datagen.peptides import GenerationError, main
    try:
        main(args)
    except (GenerationError, LabelError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm generate-data: {error}")
