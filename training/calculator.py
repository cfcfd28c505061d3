"""An ASE calculator for CGAA models: energy, forces and, for periodic cells, the stress, computed
as training and ``cgaa-openmm evaluate`` compute them (:mod:`training.data`; the OpenMM force
equals this path to 1e-13).

It runs what OpenMM does not: cells between one and two cutoffs wide, such as a single
molecular-crystal cell (OpenMM needs boxes twice the cutoff across), and ASE's optimisers, MD and
cell filters. Grains come from a per-atom ``grain_key`` column (``molID``), else from covalent
bonds; an all-atom model uses one grain per atom. Units are ASE's: eV, Å, eV/Å, eV/Å^3 (the
stress (1/V) dE/dstrain, ASE's sign and Voigt order).
"""
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from cgaa_openmm.modelfile import load_model
from cgaa_openmm.potential import resolve_model_path

from .data import Config, attach_graphs, bonded_molecules, collate, predict


class CGAACalculator(Calculator):
    """ASE calculator of a CGAA model file, shipped model name or ``CGAAModel`` (grains from
    ``grain_key``), in ``dtype`` (float64 by default)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: str = "carbonates-xtb", grain_key: str = "molID",
                 dtype: torch.dtype = torch.float64, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, torch.nn.Module):
            self.model, metadata = model, {}
        else:
            self.model, metadata = load_model(resolve_model_path(model))
        self.model = self.model.to(dtype).eval()
        self.dtype = dtype
        self.all_atom = metadata.get("grains") == "atom"
        self.grain_key = grain_key

    def grains(self, atoms) -> np.ndarray:
        """Grain index (0, 1, ...) of every atom."""
        if self.all_atom:
            return np.arange(len(atoms))
        if self.grain_key in atoms.arrays:
            return np.unique(atoms.arrays[self.grain_key], return_inverse=True)[1]
        return bonded_molecules(atoms)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if atoms.pbc.any() and not atoms.pbc.all():
            raise ValueError(f"partly periodic cells are not supported (pbc={atoms.pbc})")
        unknown = sorted(set(atoms.numbers.tolist()) - set(self.model.elements))
        if unknown:
            raise ValueError(f"elements with atomic numbers {unknown} are not in the model (it knows "
                             f"{self.model.elements})")
        if not np.isfinite(atoms.positions).all():
            raise ValueError("a coordinate is NaN or infinite")
        periodic = bool(atoms.pbc.all())
        grain = self.grains(atoms)
        config = Config(positions=torch.tensor(atoms.positions), numbers=torch.tensor(atoms.numbers),
                        grain=torch.tensor(grain), n_grains=int(grain.max()) + 1, energy=0.0,
                        forces=torch.zeros(len(atoms), 3, dtype=torch.float64),
                        cell=torch.tensor(np.asarray(atoms.cell)), periodic=periodic)
        attach_graphs([config], self.model.grain_cutoff, self.model.atom_pair_cutoff)
        batch = collate([config], self.model.elements, self.dtype)
        outputs = predict(self.model, batch, stress=periodic)
        energy = float(outputs[0].detach()[0])
        self.results = dict(energy=energy, free_energy=energy,
                            forces=outputs[1].detach().double().numpy())
        if periodic:
            self.results["stress"] = full_3x3_to_voigt_6_stress(outputs[2].detach().double().numpy()[0])

