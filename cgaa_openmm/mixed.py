"""Mixed ML/MM systems: a classical ``System`` with one region handed to an ML force.

The region's own classical terms are split off: bonded terms all of whose atoms
lie in it (every force in ``BONDED_FORCES``: bonds, angles, torsions, CMAP and
their Custom* forms), and nonbonded pairs of two region atoms in a
``NonbondedForce`` or ``CustomNonbondedForce``. Terms that couple the region to
the rest stay classical; other forces (implicit solvent, restraints, barostats)
are kept unchanged. Units are OpenMM's: nm, kJ/mol, elementary charges.
"""
import math
import re
import xml.etree.ElementTree as ET
from itertools import combinations
from typing import Callable, Iterable, List, Optional, Set, Tuple

import openmm
from openmm import unit

from .grains import atom_selection

#: Forces whose terms each act on a fixed set of atoms.
BONDED_FORCES = (openmm.HarmonicBondForce, openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce,
                 openmm.RBTorsionForce, openmm.CMAPTorsionForce, openmm.CustomBondForce, openmm.CustomAngleForce,
                 openmm.CustomTorsionForce, openmm.CustomCompoundBondForce, openmm.CustomCentroidBondForce)

#: Global parameter of an interpolating system: 1 is ML, 0 is MM.
LAMBDA = "lambda_interpolate"

#: OpenMM's 1/(4 pi eps0), kJ/mol nm / e^2 (CODATA 2018, as OpenMM 8 uses).
COULOMB = 138.935457644382

_TERM_BLOCKS = ("Bonds", "Angles", "Torsions")
_PARTICLE = re.compile(r"[pab][0-9]+$")   # p1.. (bonds, angles, torsions), a1.. b1.. (CMAP)
_GROUP = re.compile(r"g[0-9]+$")          # g1.. (CustomCentroidBondForce)
_LJ = "4*epsilon*((sigma/r)^12-(sigma/r)^6)"


def region_atoms(topology, residues=None, atoms=None) -> List[int]:
    """Sorted atom indices of the ML region: the atoms of ``residues`` (indices or ``Residue``s), or ``atoms``."""
    if (residues is None) == (atoms is None):
        raise ValueError("give the ML region either as residues or as atoms")
    if residues is not None:
        all_residues = list(topology.residues())
        indices = {int(getattr(r, "index", r)) for r in residues}
        if any(i < 0 or i >= len(all_residues) for i in indices):
            raise ValueError(f"residues must be residues of the topology or indices below {len(all_residues)}")
        atoms = [atom.index for i in indices for atom in all_residues[i].atoms()]
    return atom_selection(topology, atoms)


def mixed_system(system: openmm.System, region: Iterable[int], ml_force: openmm.Force,
                 molecule_bonds: Optional[openmm.Force] = None, interpolate: bool = False,
                 remove_constraints: bool = True) -> openmm.System:
    """A copy of ``system`` in which ``ml_force`` models the atoms of ``region``.

    ``ml_force`` must compute the region's internal energy (and take every
    atom's position). ``molecule_bonds`` (zero-energy bonds that keep the ML
    molecules whole for OpenMM) is added as it is. With ``interpolate`` the ML
    force and the removed region terms go into a ``CustomCVForce`` with energy
    λ E_ML + (1 - λ) E_MM,region, λ the global parameter ``lambda_interpolate``.
    """
    region = sorted(set(region))
    inside = set(region)
    mixed = openmm.XmlSerializer.clone(system)
    forces, region_forces = [], []
    for force in system.getForces():
        if isinstance(force, BONDED_FORCES):
            own, count = _keep_terms(force, inside.issuperset)
            if count:
                region_forces.append(own)
            force, _ = _keep_terms(force, lambda atoms: not inside.issuperset(atoms))
        else:
            force = openmm.XmlSerializer.clone(force)
            if isinstance(force, (openmm.NonbondedForce, openmm.CustomNonbondedForce)):
                if interpolate:
                    region_forces.extend(region_nonbonded(force, inside))
                _remove_pairs(force, region)
        forces.append(force)
    while mixed.getNumForces():
        mixed.removeForce(mixed.getNumForces() - 1)
    for force in forces:
        mixed.addForce(force)
    if remove_constraints:
        for k in reversed(range(mixed.getNumConstraints())):
            i, j, _ = mixed.getConstraintParameters(k)
            if i in inside and j in inside:
                mixed.removeConstraint(k)
    mixed.addForce(_interpolation(ml_force, region_forces) if interpolate else ml_force)
    if molecule_bonds is not None:
        mixed.addForce(molecule_bonds)
    return mixed


def region_nonbonded(force, region: Set[int]) -> List[openmm.Force]:
    """Forces whose energy is what a ``NonbondedForce`` or ``CustomNonbondedForce`` adds inside ``region``.

    For a ``NonbondedForce``: exceptions as OpenMM computes them (plain Coulomb
    and Lennard-Jones), other pairs as its nonbonded method does (cutoff,
    reaction field, Ewald/PME direct plus reciprocal part, switching function).
    LJPME and parameter offsets on region atoms are not supported.
    """
    if isinstance(force, openmm.CustomNonbondedForce):
        inner = openmm.XmlSerializer.clone(force)
        inner.setUseLongRangeCorrection(False)
        if inner.getNumInteractionGroups() == 0:
            inner.addInteractionGroup(sorted(region), sorted(region))
        for k in range(inner.getNumInteractionGroups()):
            set1, set2 = inner.getInteractionGroupParameters(k)
            inner.setInteractionGroupParameters(k, sorted(set(set1) & region), sorted(set(set2) & region))
        return [inner]
    if force.getNonbondedMethod() == openmm.NonbondedForce.LJPME:
        raise ValueError("interpolate=True does not support a NonbondedForce with LJPME")
    offsets = [force.getParticleParameterOffset(k)[1] for k in range(force.getNumParticleParameterOffsets())]
    exceptions = {}
    for k in range(force.getNumExceptions()):
        i, j, *parameters = force.getExceptionParameters(k)
        if i in region and j in region:
            exceptions[min(i, j), max(i, j)] = k, _md(parameters)
    offset_exceptions = {force.getExceptionParameterOffset(k)[1]
                         for k in range(force.getNumExceptionParameterOffsets())}
    if region.intersection(offsets) or offset_exceptions.intersection(k for k, _ in exceptions.values()):
        raise ValueError("interpolate=True does not support NonbondedForce parameter offsets in the ML region")
    periodic = force.getExceptionsUsePeriodicBoundaryConditions()
    excepted = _pair_force(f"{COULOMB}*chargeProd/r+{_LJ}", periodic)
    direct = _pair_force(_direct_energy(force), force.usesPeriodicBoundaryConditions())
    pair_forces = [direct]
    if force.getNonbondedMethod() in (openmm.NonbondedForce.Ewald, openmm.NonbondedForce.PME):
        # The reciprocal-space part of a pair, which OpenMM subtracts for an exclusion over the
        # distance it uses for exceptions (without periodic images, unless told otherwise).
        pair_forces.append(_pair_force(f"{COULOMB}*chargeProd*erf({_ewald_alpha(force)}*r)/r", periodic))
    particles = {i: _md(force.getParticleParameters(i)) for i in region}
    for i, j in combinations(sorted(region), 2):
        if (i, j) in exceptions:
            excepted.addBond(i, j, exceptions[i, j][1])
        else:
            (qi, si, ei), (qj, sj, ej) = particles[i], particles[j]
            for pair_force in pair_forces:
                pair_force.addBond(i, j, [qi * qj, 0.5 * (si + sj), math.sqrt(ei * ej)])
    return [f for f in [excepted] + pair_forces if f.getNumBonds()]


def _md(quantities) -> List[float]:
    """Values of OpenMM quantities in nm, kJ/mol and e."""
    return [q.value_in_unit_system(unit.md_unit_system) for q in quantities]


def _pair_force(energy: str, periodic: bool) -> openmm.CustomBondForce:
    """A ``CustomBondForce`` of atom pairs with parameters chargeProd (e^2), sigma (nm), epsilon (kJ/mol)."""
    force = openmm.CustomBondForce(energy)
    for name in ("chargeProd", "sigma", "epsilon"):
        force.addPerBondParameter(name)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def _direct_energy(force: openmm.NonbondedForce) -> str:
    """Energy (kJ/mol) of a pair that is not an exception, as ``force``'s nonbonded method computes it
    (for Ewald and PME: its direct-space part)."""
    method = force.getNonbondedMethod()
    if method == openmm.NonbondedForce.NoCutoff:
        return f"{COULOMB}*chargeProd/r+{_LJ}"
    cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
    lj, switch = _LJ, ""
    if force.getUseSwitchingFunction():
        start = force.getSwitchingDistance().value_in_unit(unit.nanometer)
        lj = f"{_LJ}*select(step(r-{start}), 1-x^3*(10-15*x+6*x^2), 1)"
        switch = f"; x=(r-{start})/{cutoff - start}"
    if method in (openmm.NonbondedForce.CutoffNonPeriodic, openmm.NonbondedForce.CutoffPeriodic):
        dielectric = force.getReactionFieldDielectric()
        k_rf = (dielectric - 1) / (2 * dielectric + 1) / cutoff ** 3
        c_rf = 3 * dielectric / (2 * dielectric + 1) / cutoff
        coulomb = f"{COULOMB}*chargeProd*(1/r+{k_rf}*r^2-{c_rf})"
    else:
        coulomb = f"{COULOMB}*chargeProd*erfc({_ewald_alpha(force)}*r)/r"
    return f"step({cutoff}-r)*({coulomb}+{lj}){switch}"


def _ewald_alpha(force: openmm.NonbondedForce) -> float:
    """The Ewald splitting parameter (1/nm) that OpenMM uses for ``force``."""
    alpha = force.getPMEParameters()[0].value_in_unit(unit.nanometer ** -1)
    if alpha == 0:
        cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
        alpha = math.sqrt(-math.log(2 * force.getEwaldErrorTolerance())) / cutoff
    return alpha


def _remove_pairs(force, region: List[int]) -> None:
    """Turn every pair of region atoms into a zero exception (``NonbondedForce``) or an exclusion."""
    pairs = list(combinations(region, 2))
    if isinstance(force, openmm.NonbondedForce):
        zeroed = {force.addException(i, j, 0.0, 1.0, 0.0, True) for i, j in pairs}
        for k in range(force.getNumExceptionParameterOffsets()):
            parameter, index, *_ = force.getExceptionParameterOffset(k)
            if index in zeroed:
                force.setExceptionParameterOffset(k, parameter, index, 0.0, 0.0, 0.0)
    else:
        existing = {tuple(sorted(force.getExclusionParticles(k))) for k in range(force.getNumExclusions())}
        for i, j in pairs:
            if (i, j) not in existing:
                force.addExclusion(i, j)


def _keep_terms(force: openmm.Force, keep: Callable[[Set[int]], bool]) -> Tuple[openmm.Force, int]:
    """A copy of a bonded force with only the terms whose atom sets pass ``keep``, and their number."""
    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    groups = [[int(p.get("p")) for p in group] for group in root.iterfind("Groups/Group")]
    kept = 0
    for block in root:
        if block.tag not in _TERM_BLOCKS:
            continue
        for term in list(block):
            atoms = set()
            for name, value in term.attrib.items():
                if _PARTICLE.match(name):
                    atoms.add(int(value))
                elif _GROUP.match(name):
                    atoms.update(groups[int(value)])
            if keep(atoms):
                kept += 1
            else:
                block.remove(term)
    return openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode")), kept


def _interpolation(ml_force: openmm.Force, mm_forces: List[openmm.Force]) -> openmm.CustomCVForce:
    """λ E_ML + (1 - λ) E_MM in a ``CustomCVForce``, λ the global parameter ``LAMBDA`` (default 1)."""
    cv = openmm.CustomCVForce("")
    cv.setName("CGAAInterpolation")
    cv.addGlobalParameter(LAMBDA, 1.0)
    cv.addCollectiveVariable("ml", ml_force)
    names = []
    for k, force in enumerate(mm_forces):
        names.append(f"mm{k}")
        cv.addCollectiveVariable(names[-1], force)
    cv.setEnergyFunction(f"{LAMBDA}*ml+(1-{LAMBDA})*({'+'.join(names) or '0'})")
    return cv
