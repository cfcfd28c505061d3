"""``cgaa-openmm train``: train and export a model as a YAML config says (``training.train``)."""
import sys

HELP = "train a model from a YAML config"
DESCRIPTION = "Train and export a model as the YAML config says (options: docs/training.md)."


def add_arguments(parser) -> None:
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")


def run(args) -> None:
    from training.config import ConfigError, load_config
    from training.data import DataError
    from training.train import train
    try:
        train(load_config(args.config), resume=args.resume)
    except (ConfigError, DataError, FileNotFoundError) as error:
        sys.exit(f"cgaa-openmm train: {error}")
