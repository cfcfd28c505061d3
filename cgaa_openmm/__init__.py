"""CGAA-FF for OpenMM: coarse-grained all-atom machine-learning force fields.

``CGAAPotential.load(name_or_path)`` reads a trained model;
``createForce``/``createSystem`` turn it into OpenMM objects for a topology.
"""
__version__ = "0.1.0"

from .potential import CGAAPotential, TopologyMismatchError  # noqa: E402
from .modelfile import ModelFileError  # noqa: E402

__all__ = ["CGAAPotential", "ModelFileError", "TopologyMismatchError", "__version__"]
