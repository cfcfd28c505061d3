"""Build the capped peptides of this folder from internal coordinates (no outside coordinates).

    python example_systems/peptides/build_peptides.py

writes ``ace-ala-nme.pdb`` (capped alanine dipeptide, 22 atoms) and ``ace-sfvgt-nme.pdb``
(ACE-SER-PHE-VAL-GLY-THR-NME, a neutral capped pentapeptide with polar, aromatic, branched and
glycine residues, 76 atoms). Heavy atoms are placed one by one from textbook bond lengths, bond
angles and dihedrals (backbone φ = -75°, ψ = 145°, a polyproline-II-like extended chain; ω = 180°);
OpenMM's ``Modeller.addHydrogens`` adds the hydrogens, and 500 iterations of energy minimisation
with amber14 (ff14SB) and GBn2 implicit solvent relax the result. Atom and residue names are
those of amber14, so ``app.ForceField("amber14-all.xml")`` accepts the files as they are.
"""
import os

import numpy as np
import openmm
from openmm import app, unit

HERE = os.path.dirname(os.path.abspath(__file__))
PHI, PSI, OMEGA = -75.0, 145.0, 180.0

# Side-chain heavy atoms: (name, element, (a, b, c), bond Å, angle b-c-x deg, dihedral a-b-c-x deg).
SIDE_CHAINS = {
    "GLY": [],
    "ALA": [("CB", "C", ("C", "N", "CA"), 1.53, 110.5, -122.6)],
    "SER": [("CB", "C", ("C", "N", "CA"), 1.53, 110.5, -122.6),
            ("OG", "O", ("N", "CA", "CB"), 1.42, 111.0, 60.0)],
    "THR": [("CB", "C", ("C", "N", "CA"), 1.54, 110.5, -122.6),
            ("OG1", "O", ("N", "CA", "CB"), 1.43, 109.5, 60.0),
            ("CG2", "C", ("N", "CA", "CB"), 1.52, 111.0, -60.0)],
    "VAL": [("CB", "C", ("C", "N", "CA"), 1.54, 110.5, -122.6),
            ("CG1", "C", ("N", "CA", "CB"), 1.52, 110.5, 180.0),
            ("CG2", "C", ("N", "CA", "CB"), 1.52, 110.5, -60.0)],
    "PHE": [("CB", "C", ("C", "N", "CA"), 1.53, 110.5, -122.6),
            ("CG", "C", ("N", "CA", "CB"), 1.50, 114.0, -60.0),
            ("CD1", "C", ("CA", "CB", "CG"), 1.39, 120.7, 90.0),
            ("CD2", "C", ("CA", "CB", "CG"), 1.39, 120.7, -90.0),
            ("CE1", "C", ("CB", "CG", "CD1"), 1.39, 120.0, 180.0),
            ("CE2", "C", ("CB", "CG", "CD2"), 1.39, 120.0, 180.0),
            ("CZ", "C", ("CG", "CD1", "CE1"), 1.39, 120.0, 0.0)],
}

PEPTIDES = {"ace-ala-nme.pdb": ["ALA"], "ace-sfvgt-nme.pdb": ["SER", "PHE", "VAL", "GLY", "THR"]}


def place(a, b, c, bond, angle, dihedral):
    """Position of atom x bonded to c, with angle b-c-x and dihedral a-b-c-x (Å, degrees)."""
    angle, dihedral = np.radians(angle), np.radians(dihedral)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    local = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(dihedral),
                      bond * np.sin(angle) * np.sin(dihedral)])
    return c + local[0] * bc + local[1] * m + local[2] * n


def heavy_atoms(sequence):
    """[(residue name, [(atom name, element, xyz Å), ...]), ...] of ACE-sequence-NME."""
    ace = {"CH3": np.zeros(3), "C": np.array([1.52, 0.0, 0.0])}
    n_next = place(np.array([1.0, 1.0, 0.0]), ace["CH3"], ace["C"], 1.33, 116.2, 180.0)
    residues = [("ACE", ace)]
    prev_ca, prev_c, prev_n = ace["CH3"], ace["C"], None
    for name in sequence:
        atoms = {"N": n_next}
        atoms["CA"] = place(prev_ca, prev_c, atoms["N"], 1.458, 121.7, OMEGA)
        atoms["C"] = place(prev_c, atoms["N"], atoms["CA"], 1.525, 111.2, PHI)
        n_next = place(atoms["N"], atoms["CA"], atoms["C"], 1.329, 116.2, PSI)
        atoms["O"] = place(atoms["N"], atoms["CA"], atoms["C"], 1.231, 120.5, PSI + 180.0)
        for atom, _, (a, b, c), bond, angle, dihedral in SIDE_CHAINS[name]:
            atoms[atom] = place(atoms[a], atoms[b], atoms[c], bond, angle, dihedral)
        if prev_n is None:   # the acetyl O, now that the next N and CA exist
            ace["O"] = place(atoms["CA"], atoms["N"], ace["C"], 1.23, 122.5, 0.0)
        residues.append((name, atoms))
        prev_ca, prev_c, prev_n = atoms["CA"], atoms["C"], atoms["N"]
    nme = {"N": n_next}
    nme["C"] = place(prev_ca, prev_c, nme["N"], 1.45, 121.7, OMEGA)   # the methyl C, PDB's name
    residues.append(("NME", nme))
    return residues


def element_of(residue, atom):
    for side in SIDE_CHAINS.get(residue, []):
        if side[0] == atom:
            return side[1]
    return {"N": "N", "O": "O"}.get(atom, "C")


def build(sequence):
    """Topology and positions (nm) of ACE-sequence-NME with hydrogens, minimised with amber14/GBn2."""
    topology = app.Topology()
    chain = topology.addChain()
    positions = []
    for k, (name, atoms) in enumerate(heavy_atoms(sequence)):
        residue = topology.addResidue(name, chain, id=str(k + 1))
        for atom, xyz in atoms.items():
            topology.addAtom(atom, app.Element.getBySymbol(element_of(name, atom)), residue)
            positions.append(openmm.Vec3(*(xyz / 10.0)))
    topology.createStandardBonds()
    forcefield = app.ForceField("amber14-all.xml", "implicit/gbn2.xml")
    modeller = app.Modeller(topology, positions * unit.nanometer)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    return modeller.topology, context.getState(getPositions=True).getPositions()


def main():
    for filename, sequence in PEPTIDES.items():
        topology, positions = build(sequence)
        with open(os.path.join(HERE, filename), "w") as f:
            f.write(f"REMARK   1 ACE-{'-'.join(sequence)}-NME built by build_peptides.py from internal "
                    f"coordinates\n")
            app.PDBFile.writeFile(topology, positions, f, keepIds=True)
        print(filename, topology.getNumAtoms(), "atoms,", topology.getNumResidues(), "residues")


if __name__ == "__main__":
    main()
