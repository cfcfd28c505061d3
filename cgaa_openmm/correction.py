"""Opt-in density corrections: a mean-field energy of the box volume that moves a liquid's NPT
density to a target (the experiment) without changing any force between atoms.

A model trained on a reference level (GFN2-xTB) should reproduce that level's density, errors
included; a user who wants the experimental density instead names a correction stored with the
model. The correction is the form of the long-range (tail) correction of a dispersion interaction
cut off in a homogeneous fluid (OpenMM's ``NonbondedForce.setUseDispersionCorrection``), counted
in grains:

    E = -c G^2 / V,   P = -dE/dV = -c G^2 / V^2 = -c n^2,

with G the number of grains in the box, V its volume (Å^3), n = G/V, and c (eV Å^3) fitted so
that the model's pressure at the target density is the target pressure:
c = (P_model - P_target) / n^2 (:func:`tail_coefficient`). The same c serves any box of the same
liquid, as n does. The atoms feel no force from it; a barostat, which changes V, does.

The same form holds what a model cannot see by construction: the reference's dispersion between
grains farther apart than its grain cutoff, whose mean-field energy in a homogeneous liquid is
-c G^2/V with c from the reference's own dispersion (``benchmarks/density_correction.py
--dispersion-tail``). That correction has no target density (``target_g_per_mL`` is None).

A model file holds its corrections in ``metadata["density_corrections"]``, by name: ``{"NAME":
{"tail_eV_A3": c, "target_g_per_mL": ... or None, "fitted": {...how...}}}`` (:func:`add_correction`);
``CGAAPotential.createSystem(..., densityCorrection="NAME")`` adds it to the System as its own
force, named ``CGAADensityCorrection``.
"""
import json
from typing import Any, Dict, Optional, Tuple

import torch

#: 1 eV/Å^3 in kbar.
KBAR_PER_EV_PER_A3 = 1602.1766


class TailEnergy(torch.nn.Module):
    """OpenMM's side of a correction: box vectors -> E = -c G^2 / V, and zero forces.

    Args:
        coefficient: c, eV Å^3.
        n_grains: G, the grains of the system.
        length_scale: Å per input length unit (10 for nm).
        energy_scale: output energy unit per eV (96.485... for kJ/mol).
    """

    def __init__(self, coefficient: float, n_grains: int, length_scale: float = 1.0, energy_scale: float = 1.0):
        super().__init__()
        # c G^2 in output energy units x input length units^3
        self.scaled = float(coefficient) * float(n_grains) ** 2 * float(energy_scale) / float(length_scale) ** 3

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        volume = torch.linalg.det(boxvectors.to(torch.float64))
        return -self.scaled / volume, torch.zeros_like(positions)


def tail_coefficient(pressure_kbar: float, grains_per_A3: float, target_kbar: float = 0.001) -> float:
    """c (eV Å^3) that brings a model whose pressure is ``pressure_kbar`` at a grain density
    ``grains_per_A3`` (G/V, 1/Å^3) to ``target_kbar`` there (default 1 bar)."""
    return (pressure_kbar - target_kbar) / KBAR_PER_EV_PER_A3 / grains_per_A3 ** 2


def tail_pressure_kbar(coefficient: float, grains_per_A3: float) -> float:
    """The correction's pressure, -c n^2, in kbar."""
    return -coefficient * grains_per_A3 ** 2 * KBAR_PER_EV_PER_A3


def add_correction(metadata: Dict[str, Any], name: str, coefficient: float, target_g_per_mL: Optional[float],
                   fitted: Dict[str, Any]) -> Dict[str, Any]:
    """``metadata`` with the correction ``name`` (c = ``coefficient``, eV Å^3) added or replaced;
    ``fitted`` says how it was fitted (the pressure, density, run and command)."""
    corrections = dict(metadata.get("density_corrections") or {})
    plain = json.loads(json.dumps(fitted))      # plain values only (NumPy scalars too): a model file holds no objects
    target = None if target_g_per_mL is None else float(target_g_per_mL)
    corrections[name] = dict(kind="tail", tail_eV_A3=float(coefficient), target_g_per_mL=target, fitted=plain)
    return dict(metadata, density_corrections=corrections)


def correction_of(metadata: Dict[str, Any], name: Optional[str], model_name: str = "this model") -> Optional[dict]:
    """The correction ``name`` of a model's metadata (None for None); a ``ValueError`` naming the
    corrections there are if it has no such one."""
    if name is None:
        return None
    corrections = metadata.get("density_corrections") or {}
    if name not in corrections:
        have = ", ".join(sorted(corrections)) or "none"
        raise ValueError(f"{model_name} has no density correction {name!r} (it has: {have})")
    return corrections[name]
