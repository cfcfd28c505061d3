"""The α-RDX crystal cell and supercells, built from its published asymmetric unit.

    python example_systems/build_rdx.py [--repeats 1 1 1 --repeats 2 2 2] [--output-dir example_systems]

α-RDX (cyclotrimethylene trinitramine, C3H6N6O6): room-temperature neutron structure of
C. S. Choi and E. Prince, Acta Cryst. B28 (1972) 2857-2862, space group Pbca (No. 61), Z = 8,
a = 13.182, b = 11.574, c = 10.709 Å, 1.806 g/cm³. The asymmetric unit (one molecule, 21 atoms,
fractional coordinates) is read from ``../shared/data/rdx/alpha_rdx_asymmetric_unit.txt`` (see its
README for where the numbers come from). The eight Pbca operations give the eight molecules of
the cell, each placed whole with its centre in the cell. The script checks what the paper states:
21 distinct atoms per molecule, eight molecules and no two atoms of different molecules closer
than 1.8 Å, every molecule bonded like the first (21 bonds: six ring C-N, three N-N, six N-O,
six C-H) with bond lengths within 0.1 Å of the first molecule's, and the density 1.806 g/cm³.

Writes ``rdx.pdb`` (the cell, 168 atoms) and ``rdx-AxBxC.pdb`` for every other ``--repeats``: one
residue ``RDX`` per molecule, CONECT records for every bond, CRYST1 with the box (P 1). Units: Å.
"""
import argparse
import os

import numpy as np
from openmm import Vec3, app, unit

HERE = os.path.dirname(os.path.abspath(__file__))
ASYMMETRIC_UNIT = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "rdx",
                                                "alpha_rdx_asymmetric_unit.txt"))
#: Å, Choi & Prince (1972), room temperature.
CELL = (13.182, 11.574, 10.709)
DENSITY_G_PER_CM3 = 1.806
#: The Pbca operations (International Tables, No. 61): rotation diagonal and translation.
PBCA = [((1, 1, 1), (0, 0, 0)), ((-1, -1, 1), (0.5, 0, 0.5)), ((-1, 1, -1), (0, 0.5, 0.5)),
        ((1, -1, -1), (0.5, 0.5, 0)), ((-1, -1, -1), (0, 0, 0)), ((1, 1, -1), (0.5, 0, 0.5)),
        ((1, -1, 1), (0, 0.5, 0.5)), ((-1, 1, 1), (0.5, 0.5, 0))]
#: Å: covalent radii for bond perception (bonded if closer than 1.25 x their sum).
RADII = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66}
BONDS_PER_MOLECULE = 21
#: Atoms per element of one molecule, C3H6N6O6.
FORMULA = {"C": 3, "H": 6, "N": 6, "O": 6}


def read_asymmetric_unit(path: str = ASYMMETRIC_UNIT):
    """Labels, element symbols and fractional coordinates (21, 3) of the asymmetric unit."""
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: the α-RDX asymmetric unit comes with the shared data "
                         f"(../shared/data/rdx/)")
    rows = [line.split() for line in open(path) if line.strip() and not line.startswith("#")]
    if rows[0] != ["label", "element", "x", "y", "z"]:
        raise SystemExit(f"{path}: expected the columns 'label element x y z', found {rows[0]}")
    labels, elements = [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]
    counts = {e: elements.count(e) for e in FORMULA}
    if counts != FORMULA:
        raise SystemExit(f"{path}: the asymmetric unit holds {counts} atoms, α-RDX's molecule {FORMULA}: "
                         f"an atom is missing or extra")
    return labels, elements, np.array([[float(v) for v in r[2:]] for r in rows[1:]])


def bonds(xyz: np.ndarray, elements) -> list:
    """Atom pairs (i < j) closer than 1.25 x the sum of their covalent radii (Å, no periodicity)."""
    radius = np.array([RADII[e] for e in elements])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
    i, j = np.nonzero(np.triu(d < 1.25 * (radius[:, None] + radius[None]), 1))
    return list(zip(i.tolist(), j.tolist()))


def unit_cell(labels, elements, fractional: np.ndarray):
    """Cartesian positions (8, 21, 3) Å of the cell's molecules, each whole, centre in the cell."""
    lengths = np.array(CELL)
    molecules = []
    for rotation, translation in PBCA:
        f = fractional * np.array(rotation) + np.array(translation)
        f -= np.floor(f.mean(0))                       # the molecule's centre into [0, 1)
        molecules.append(f * lengths)
    return np.array(molecules)


def check(molecules: np.ndarray, elements) -> dict:
    """The checks of the module docstring; returns what was measured."""
    n_mol, n_atoms, _ = molecules.shape
    lengths = np.array(CELL)
    reference = bonds(molecules[0], elements)
    if len(reference) != BONDS_PER_MOLECULE:
        raise SystemExit(f"the asymmetric unit has {len(reference)} bonds, not {BONDS_PER_MOLECULE}: check the file")
    first = np.array([np.linalg.norm(molecules[0][i] - molecules[0][j]) for i, j in reference])
    for k, mol in enumerate(molecules):
        if bonds(mol, elements) != reference:
            raise SystemExit(f"molecule {k} is not bonded like molecule 0")
        lengths_k = np.array([np.linalg.norm(mol[i] - mol[j]) for i, j in reference])
        if np.abs(lengths_k - first).max() > 0.1:
            raise SystemExit(f"molecule {k}: bond lengths differ from molecule 0 by {np.abs(lengths_k - first).max():.2f} Å")
    xyz = molecules.reshape(-1, 3)
    owner = np.repeat(np.arange(n_mol), n_atoms)
    delta = xyz[:, None] - xyz[None]
    delta -= lengths * np.round(delta / lengths)
    d = np.linalg.norm(delta, axis=2)
    closest = float(d[owner[:, None] != owner[None]].min())
    if closest < 1.8:
        raise SystemExit(f"atoms of different molecules {closest:.2f} Å apart: the cell does not hold {n_mol} "
                         f"distinct molecules")
    mass = sum(app.Element.getBySymbol(e).mass.value_in_unit(unit.dalton) for e in elements) * n_mol
    density = mass / 6.02214076e23 / (np.prod(lengths) * 1e-24)
    if abs(density - DENSITY_G_PER_CM3) > 0.005:
        raise SystemExit(f"density {density:.3f} g/cm³, not the paper's {DENSITY_G_PER_CM3}")
    kinds = {}
    for (i, j), length in zip(reference, first):
        kinds.setdefault("-".join(sorted((elements[i], elements[j]))), []).append(round(float(length), 3))
    return dict(molecules=n_mol, atoms=n_mol * n_atoms, density_g_per_cm3=density,
                closest_intermolecular_A=closest, bond_lengths_A=kinds)


def supercell_topology(labels, elements, molecules: np.ndarray, repeats, lengths=CELL):
    """An OpenMM topology (one residue RDX per molecule, bonds) and positions (Å) of the cell
    (edges ``lengths``, Å) repeated ``repeats`` times along a, b, c."""
    lengths = np.array(lengths)
    reference = bonds(molecules[0], elements)
    topology = app.Topology()
    chain = topology.addChain()
    positions = []
    for shift in np.ndindex(*repeats):
        for mol in molecules:
            residue = topology.addResidue("RDX", chain)
            atoms = [topology.addAtom(label, app.Element.getBySymbol(e), residue) for label, e in zip(labels, elements)]
            for i, j in reference:
                topology.addBond(atoms[i], atoms[j])
            positions.append(mol + np.array(shift) * lengths)
    box = lengths * np.array(repeats)
    topology.setPeriodicBoxVectors([Vec3(box[0], 0, 0), Vec3(0, box[1], 0), Vec3(0, 0, box[2])] * unit.angstrom)
    return topology, np.concatenate(positions)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, nargs=3, action="append", metavar=("A", "B", "C"),
                        help="supercells to write (default: 1 1 1 and 2 2 2)")
    parser.add_argument("--asymmetric-unit", default=ASYMMETRIC_UNIT)
    parser.add_argument("--output-dir", default=HERE)
    args = parser.parse_args(argv)
    labels, elements, fractional = read_asymmetric_unit(args.asymmetric_unit)
    molecules = unit_cell(labels, elements, fractional)
    checked = check(molecules, elements)
    written = []
    for repeats in args.repeats or [(1, 1, 1), (2, 2, 2)]:
        topology, xyz = supercell_topology(labels, elements, molecules, repeats)
        name = "rdx.pdb" if tuple(repeats) == (1, 1, 1) else "rdx-{}x{}x{}.pdb".format(*repeats)
        path = os.path.join(args.output_dir, name)
        with open(path, "w") as file:
            print("REMARK   1 ALPHA-RDX, PBCA CELL OF CHOI AND PRINCE, ACTA CRYST. B28 (1972) 2857, AS P 1",
                  file=file)
            app.PDBFile.writeFile(topology, xyz * unit.angstrom, file, keepIds=False)
        written.append(path)
    print(f"α-RDX: {checked['molecules']} molecules, {checked['atoms']} atoms, {checked['density_g_per_cm3']:.3f} g/cm³, "
          f"closest intermolecular contact {checked['closest_intermolecular_A']:.2f} Å; wrote {', '.join(written)}")
    return dict(checked, written=written)


if __name__ == "__main__":
    main()
