"""Error metrics of predicted energies and forces (eV, eV/Å)."""
from typing import Dict

import torch


def error_metrics(energy_pred: torch.Tensor, energy_ref: torch.Tensor, n_atoms: torch.Tensor,
                  forces_pred: torch.Tensor, forces_ref: torch.Tensor) -> Dict[str, float]:
    """RMSE/MAE of energy per atom (meV/atom) and of force components (eV/Å)."""
    de = (energy_pred - energy_ref) / n_atoms
    df = forces_pred - forces_ref
    return dict(
        energy_rmse_mev_per_atom=1e3 * float(de.pow(2).mean().sqrt()),
        energy_mae_mev_per_atom=1e3 * float(de.abs().mean()),
        forces_rmse=float(df.pow(2).mean().sqrt()),
        forces_mae=float(df.abs().mean()),
    )
