"""``cgaa-openmm evaluate``: errors of a model on labelled data (``training.evaluate``)."""
import sys

HELP = "errors of a model on labelled data, with a parity plot"


def add_arguments(parser) -> None:
    from training.evaluate import add_arguments as evaluate_arguments
    evaluate_arguments(parser)


def run(args) -> None:
    from training.data import DataError
    from training.evaluate import run as evaluate

    from ..modelfile import ModelFileError
    try:
        evaluate(args)
    except (DataError, ModelFileError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm evaluate: {error}")
