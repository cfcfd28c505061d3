"""Build one ethylene carbonate (EC) in a periodic box of TIP3P water as a PDB with CONECT bonds.

The EC geometry is the GFN2-xTB one of the first EC of ``ecemc.pdb``; water is
added by ``Modeller.addSolvent`` with ``ec.xml`` (OPLS-AA-style EC) and
OpenMM's ``amber14/tip3p.xml``, then relaxed by energy minimisation (PME, rigid
water) with the EC held fixed, which removes the close contacts that
``addSolvent`` leaves across the faces of a small box. The box must stay at
least 12 Å wide (twice the 6 Å grain cutoff of ``carbonates-xtb``) for the CGAA
force to accept it.

Usage: ``python example_systems/build_ec_water.py --box 1.4 -o example_systems/ec_water.pdb``
"""
import argparse
import os

import openmm
from openmm import Vec3, app, unit

HERE = os.path.dirname(os.path.abspath(__file__))


def force_field() -> app.ForceField:
    """EC (``ec.xml``) with TIP3P water (``amber14/tip3p.xml``)."""
    return app.ForceField(os.path.join(HERE, "ec.xml"), "amber14/tip3p.xml")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", type=float, default=1.4, help="cubic box edge, nm")
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "ec_water.pdb"))
    args = parser.parse_args(argv)
    liquid = app.PDBFile(os.path.join(HERE, "ecemc.pdb"))
    modeller = app.Modeller(liquid.topology, liquid.positions)
    modeller.delete(list(liquid.topology.residues())[1:])
    modeller.addSolvent(force_field(), model="tip3p", boxSize=Vec3(args.box, args.box, args.box) * unit.nanometer)
    system = force_field().createSystem(modeller.topology, nonbondedMethod=app.PME,
                                        nonbondedCutoff=0.6 * unit.nanometer, rigidWater=True)
    for atom in list(modeller.topology.residues())[0].atoms():
        system.setParticleMass(atom.index, 0.0)  # the minimiser leaves massless particles in place
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    state = context.getState(getEnergy=True, getPositions=True, enforcePeriodicBox=True)
    with open(args.output, "w") as f:
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), f)
    n_water = modeller.topology.getNumResidues() - 1
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    print(f"{args.output}: 1 EC + {n_water} TIP3P water, {modeller.topology.getNumAtoms()} atoms, "
          f"box {args.box} nm, MM energy {energy:.1f} kJ/mol")


if __name__ == "__main__":
    main()
