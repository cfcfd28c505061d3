"""CGAA-FF for OpenMM: coarse-grained all-atom machine-learning force fields.

``CGAAPotential.load(name_or_path)`` reads a trained model;
``createForce``/``createSystem`` turn it into OpenMM objects for a topology.
"""
__version__ = "0.1.0"

import re  # noqa: E402

import torch  # noqa: E402,F401  (loads the CUDA runtime libraries the openmm-torch plugins link to)
import openmm  # noqa: E402


def _load_torch_plugins() -> None:
    """Load openmm-torch platform plugins that failed because ``openmm`` was imported before torch.

    A plugin whose platform cannot run here (the OpenCL one without ``libOpenCL.so.1``, the CUDA
    one without a driver) still fails; as in OpenMM's own plugin loading, that platform is then
    simply not available.
    """
    for failure in openmm.Platform.getPluginLoadFailures():
        match = re.match(r"Error loading library (\S*OpenMMTorch\S*\.so): ", failure)
        if match:
            try:
                openmm.Platform.loadPluginLibrary(match.group(1))
            except openmm.OpenMMException:
                pass


_load_torch_plugins()

from .potential import CGAAPotential, TopologyMismatchError  # noqa: E402
from .modelfile import ModelFileError  # noqa: E402

__all__ = ["CGAAPotential", "ModelFileError", "TopologyMismatchError", "__version__"]
