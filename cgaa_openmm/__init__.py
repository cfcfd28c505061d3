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


def _import_simtk_quietly() -> None:
    """Import ``simtk.openmm`` with its deprecation message dropped.

    openmm-torch's SWIG wrapper (``openmmtorch.py``) does ``import simtk.openmm``, and that module
    announces ``Warning: importing 'simtk.openmm' is deprecated.  Import 'openmm' instead.`` through
    the root logger (not ``warnings``), i.e. on stderr of every run that builds a ``TorchForce``.
    Importing it here first, with a filter on the root logger for that one message only, leaves it
    in ``sys.modules`` so that openmm-torch's import is silent; other log records and warnings pass.
    """
    import logging

    def not_simtk(record: logging.LogRecord) -> bool:
        return "importing 'simtk.openmm' is deprecated" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_simtk)
    try:
        import simtk.openmm  # noqa: F401
    except ImportError:      # an OpenMM without the simtk shim: nothing to silence
        pass
    finally:
        root.removeFilter(not_simtk)


_import_simtk_quietly()

from .potential import CGAAPotential, TopologyMismatchError  # noqa: E402
from .modelfile import ModelFileError  # noqa: E402

__all__ = ["CGAAPotential", "ModelFileError", "TopologyMismatchError", "__version__"]
