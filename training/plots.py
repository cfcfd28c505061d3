"""Learning-curve and parity plots (PNG, matplotlib without a display)."""
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def learning_curve_plot(log: List[Dict[str, float]], path: str) -> None:
    """Training loss, validation force RMSE (eV/Å) and energy RMSE (meV/atom) per epoch."""
    epochs = [row["epoch"] for row in log]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].semilogy(epochs, [row["loss"] for row in log])
    axes[0].set_ylabel("training loss")
    axes[1].semilogy(epochs, [row["valid_forces_rmse"] for row in log])
    axes[1].set_ylabel("validation force RMSE (eV/Å)")
    axes[2].semilogy(epochs, [row["valid_energy_rmse_mev_per_atom"] for row in log])
    axes[2].set_ylabel("validation energy RMSE (meV/atom)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parity_plot(arrays: Dict, errors: Dict[str, float], path: str, title: str = "") -> None:
    """Predicted vs reference force components (eV/Å) and energies per atom (eV/atom)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    panels = [("forces", "force component (eV/Å)",
               f"RMSE {errors['forces_rmse']:.3f} eV/Å, MAE {errors['forces_mae']:.3f} eV/Å"),
              ("energy", "energy per atom (eV/atom)",
               f"RMSE {errors['energy_rmse_mev_per_atom']:.2f} meV/atom")]
    for ax, (key, label, text) in zip(axes, panels):
        ref, pred = arrays[f"{key}_ref"], arrays[f"{key}_pred"]
        ax.scatter(ref, pred, s=2, alpha=0.3, rasterized=True)
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(text, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
