"""Shared fixtures: real carbonate configurations and small untrained models (float64)."""
import os
import tempfile

import numpy as np
import pytest
import torch
from ase.io import read

from cgaa_openmm.model import CGAAModel
from cgaa_openmm.torchforce import CGAAEnergy, CGAAEnergyAndForces

# Compiled cores (cgaa_openmm.corecache) go to a folder of this run, shared by its test processes.
os.environ.setdefault("CGAA_OPENMM_CACHE", tempfile.mkdtemp(prefix="cgaa-openmm-cache-"))

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "carbonates")
ELEMENTS = [1, 6, 8]


def data_file(name):
    path = os.path.join(DATA, name)
    if not os.path.exists(path):
        pytest.fail(f"shared data missing: {path} (tests read ../shared/data/carbonates)")
    return path


@pytest.fixture(scope="session")
def clusters():
    """Real EC/EMC-family clusters: a 3-molecule and a 6-molecule one."""
    configs = read(data_file("solvent_xtb_train_50.xyz"), index=":")
    configs = [a for a in configs if a.info.get("config_type") != "IsolatedAtom"]
    return sorted(configs, key=lambda a: a.info["Nmols"])[-1], [a for a in configs if a.info["Nmols"] == 3][0]


def make_model(seed=0, **hp):
    torch.manual_seed(seed)
    hp = dict(dict(channels=8, lmax=2, embed_layers=1, interactions=2, grain_cutoff=5.0, pair_cutoff=3.5), **hp)
    model = CGAAModel(ELEMENTS, [-10.0, -48.0, -100.0], **hp).double()
    # Untrained weights give tiny outputs; scale them so that checks are not trivially met.
    model.energy_scale = 3.0
    if model.pair is not None:  # the pair term starts at zero: give it weights of its own
        with torch.no_grad():
            model.pair.theta.normal_(0.0, 0.05)
    return model.eval()


def make_module(atoms, model, periodic=False, grains="molID", forces=False, region=None, **options):
    """The energy module of ``atoms`` (``forces``: the TorchForce's (energy, forces) module); with
    ``region`` (indices), the module of those atoms within a larger system whose atoms ``atoms`` are
    (as in a mixed System). ``options`` go to its constructor."""
    species = torch.tensor([ELEMENTS.index(int(z)) for z in atoms.numbers])
    if grains == "atom":
        grain = torch.arange(len(atoms))
    else:
        _, g = np.unique(atoms.arrays["molID"], return_inverse=True)
        grain = torch.tensor(g)
    if region is not None:
        options["atoms"] = torch.as_tensor(region)
    return (CGAAEnergyAndForces if forces else CGAAEnergy)(model, species, grain, periodic, **options)


def energy_forces(module, positions, cell=None):
    pos = torch.as_tensor(positions, dtype=torch.float64).clone().requires_grad_(True)
    energy = module(pos, None if cell is None else torch.as_tensor(cell, dtype=torch.float64))
    forces, = torch.autograd.grad(energy, pos)
    return energy.item(), -forces.numpy()
