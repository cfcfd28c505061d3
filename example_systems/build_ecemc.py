"""Build a periodic EC/EMC liquid box as a PDB: one residue per molecule, bonds, box.

The molecules' geometries are GFN2-xTB ones taken from the carbonate data set
(``../shared/data/carbonates``). They start on a loose lattice with random
orientations; the box is then compressed step by step to the target density,
with random moves after each step until no two atoms of different molecules
are closer than ``--min-distance`` (periodic images included).

Usage: ``python example_systems/build_ecemc.py --ec 20 --emc 40 --density 1.2 -o packed.pdb``
(EC:EMC 3:7 by weight is about 1:2 by molecule count.)

The bundled ``ecemc.pdb`` is that packed box equilibrated at 300 K, so that MD started from it
(``cgaa-openmm simulate``, velocities drawn at 300 K, no minimisation) is at 300 K from its first
step. A packed box is far from equilibrium (a run from it heats to 550 K within 25 fs; minimised
instead, it cools to 150 K). The equilibration: 0.8 ps NVT (0.5 fs, 300 K) with the fast model shipped before 2026-12-02
and strong friction, from the packed box bundled before (11 min on one core of the 2-core development
machine; the temperature is within 300-315 K from step 600 on, the potential energy flat from step 1200),
then ``--positions`` to write its last state with the packed box's topology::

    cgaa-openmm simulate packed.pdb --model carbonates-xtb-fast --minimize 0 --friction 10 \\
        --steps 1600 --threads 1 --output ecemc-equilibration
    python example_systems/build_ecemc.py --input packed.pdb \\
        --positions ecemc-equilibration/checkpoint.xml -o example_systems/ecemc.pdb

``--tile NA NB NC`` instead repeats an already built box (``--input``, default the bundled
``ecemc.pdb``) NA x NB x NC times along its box vectors: a larger box of the same relaxed liquid,
e.g. ``--tile 5 5 5 -o benchmarks/runs/ecemc_5x5x5.cif`` (100,000 atoms; write PDBx/mmCIF
``.cif`` above 99,999 atoms, where PDB atom serial numbers run out).
"""
import argparse
import os

import numpy as np
from ase.io import read
from ase.neighborlist import natural_cutoffs, neighbor_list
from openmm import Vec3, app, unit
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "carbonates", "solvent_xtb_train_200.xyz")
BOX = os.path.join(HERE, "ecemc.pdb")
FORMULAS = {"EC": "C3H4O3", "EMC": "C4H8O3"}


def molecule_templates(path: str = DATA):
    """One xTB geometry (ase.Atoms, centred) per residue name in ``FORMULAS``."""
    templates = {}
    for atoms in read(path, index=":"):
        if "molID" not in atoms.arrays:
            continue
        for m in np.unique(atoms.arrays["molID"]):
            mol = atoms[atoms.arrays["molID"] == m]
            for name, formula in FORMULAS.items():
                if name not in templates and mol.get_chemical_formula() == formula:
                    mol.positions -= mol.positions.mean(0)
                    templates[name] = mol
        if len(templates) == len(FORMULAS):
            return templates
    raise RuntimeError(f"{path}: no molecule with formulas {FORMULAS}")


def _overlaps(molecules, edge, min_distance):
    """Per molecule, the number of its atoms closer than ``min_distance`` to another molecule's."""
    xyz = np.vstack(molecules) % edge
    owner = np.repeat(np.arange(len(molecules)), [len(m) for m in molecules])
    pairs = cKDTree(xyz, boxsize=edge).query_pairs(min_distance, output_type="ndarray")
    pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    return np.bincount(owner[pairs.ravel()], minlength=len(molecules))


def pack(templates, counts, density, min_distance, seed):
    """Place molecules at low density, then compress to ``density`` with hard-core Monte Carlo.

    Returns a list of (name, positions Å) and the cubic box edge (Å).
    """
    rng = np.random.default_rng(seed)
    mass = sum(n * templates[k].get_masses().sum() for k, n in counts.items())  # g/mol
    target = (mass / 6.02214076e23 / density * 1e24) ** (1 / 3)  # Å
    names = [k for k, n in counts.items() for _ in range(n)]
    edge = target * 2.0
    grid = int(np.ceil(len(names) ** (1 / 3)))
    sites = (np.array(np.meshgrid(*[np.arange(grid)] * 3)).reshape(3, -1).T[:len(names)] + 0.5) * edge / grid
    molecules = [Rotation.random(random_state=rng).apply(templates[n].positions) + c for n, c in zip(names, sites)]
    while True:
        new_edge = max(target, edge * 0.97)
        molecules = [m + m.mean(0) * (new_edge / edge - 1) for m in molecules]
        edge = new_edge
        for _ in range(2000):
            bad = np.nonzero(_overlaps(molecules, edge, min_distance))[0]
            if len(bad) == 0:
                break
            for k in bad:
                centre = molecules[k].mean(0)
                moved = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).apply(molecules[k] - centre) \
                    + centre + rng.normal(0, 0.3, 3)
                trial = molecules[:k] + [moved] + molecules[k + 1:]
                if _overlaps(trial, edge, min_distance)[k] <= _overlaps(molecules, edge, min_distance)[k]:
                    molecules = trial
        else:
            raise RuntimeError(f"could not pack at {edge:.2f} Å: lower --density or --min-distance")
        if edge == target:
            return list(zip(names, molecules)), edge


def write_pdb(templates, placed, edge, path):
    """Write the box as PDB with one residue per molecule and CONECT bonds."""
    topology = app.Topology()
    chain = topology.addChain()
    bonds = {}
    for name, mol in templates.items():
        i, j = neighbor_list("ij", mol, natural_cutoffs(mol, mult=1.2))
        bonds[name] = sorted({(a, b) for a, b in zip(i, j) if a < b})
    positions = []
    for name, xyz in placed:
        residue = topology.addResidue(name, chain)
        counter = {}
        atoms = []
        for symbol, p in zip(templates[name].get_chemical_symbols(), xyz):
            counter[symbol] = counter.get(symbol, 0) + 1
            atoms.append(topology.addAtom(f"{symbol}{counter[symbol]}", app.Element.getBySymbol(symbol), residue))
            positions.append(Vec3(*p))
        for a, b in bonds[name]:
            topology.addBond(atoms[a], atoms[b])
    topology.setPeriodicBoxVectors([Vec3(edge, 0, 0), Vec3(0, edge, 0), Vec3(0, 0, edge)] * unit.angstrom)
    with open(path, "w") as f:
        app.PDBFile.writeFile(topology, positions * unit.angstrom, f, keepIds=True)


def tile(path, repeats):
    """The periodic box of the PDB file ``path`` repeated ``repeats`` = (na, nb, nc) times.

    Copy (i, j, k) is shifted by i a + j b + k c; atoms, residues and bonds keep the input's order
    within each copy. Returns ``(topology, positions)``: an ``openmm.app.Topology`` with the
    enlarged box and an (N, 3) numpy array in nm.
    """
    pdb = app.PDBFile(path)
    box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    xyz = np.array(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    offsets = np.array(np.meshgrid(*[np.arange(n) for n in repeats], indexing="ij")).reshape(3, -1).T @ box
    topology = app.Topology()
    chain = topology.addChain()
    for _ in offsets:
        new = {}
        for residue in pdb.topology.residues():
            copy = topology.addResidue(residue.name, chain)
            for atom in residue.atoms():
                new[atom] = topology.addAtom(atom.name, atom.element, copy)
        for bond in pdb.topology.bonds():
            topology.addBond(new[bond[0]], new[bond[1]])
    topology.setPeriodicBoxVectors([Vec3(*(v * n)) for v, n in zip(box, repeats)] * unit.nanometer)
    return topology, (xyz[None] + offsets[:, None]).reshape(-1, 3)


def with_positions(path, state_path):
    """The topology of the PDB file ``path`` and the positions (nm, numpy) of the OpenMM state XML
    ``state_path`` (e.g. a ``checkpoint.xml`` of ``cgaa-openmm simulate``), each residue shifted whole so
    that its centre lies in the box (rectangular boxes)."""
    import openmm
    pdb = app.PDBFile(path)
    with open(state_path) as f:
        state = openmm.XmlSerializer.deserialize(f.read())
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    if len(xyz) != pdb.topology.getNumAtoms():
        raise SystemExit(f"{state_path} holds {len(xyz)} atoms, {path} {pdb.topology.getNumAtoms()}")
    if np.count_nonzero(box - np.diag(np.diag(box))):
        raise SystemExit(f"{state_path}: only rectangular boxes are supported")
    edges = np.diag(box)
    for residue in pdb.topology.residues():
        atoms = [atom.index for atom in residue.atoms()]
        xyz[atoms] -= np.floor(xyz[atoms].mean(0) / edges) * edges
    pdb.topology.setPeriodicBoxVectors(box * unit.nanometer)
    return pdb.topology, xyz


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ec", type=int, default=20, help="number of EC molecules")
    parser.add_argument("--emc", type=int, default=40, help="number of EMC molecules")
    parser.add_argument("--density", type=float, default=1.2, help="g/cm^3")
    parser.add_argument("--min-distance", type=float, default=2.0, help="Å between atoms of different molecules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, nargs=3, metavar=("NA", "NB", "NC"),
                        help="repeat --input NA x NB x NC times instead of packing a new box")
    parser.add_argument("--input", default=BOX, help="box that --tile repeats, or whose topology --positions takes")
    parser.add_argument("--positions", metavar="STATE.xml",
                        help="write --input's topology with the positions and box of this OpenMM state "
                             "(e.g. checkpoint.xml of a cgaa-openmm simulate run) instead of packing a new box")
    parser.add_argument("-o", "--output", default="ecemc.pdb", help=".pdb, or .cif for PDBx/mmCIF")
    args = parser.parse_args(argv)
    if args.tile:
        topology, xyz = tile(args.input, args.tile)
        writer = app.PDBxFile if args.output.endswith(".cif") else app.PDBFile
        with open(args.output, "w") as f:
            writer.writeFile(topology, xyz * unit.nanometer, f)
        print(f"{args.output}: {args.input} x {args.tile}, {topology.getNumAtoms()} atoms")
        return
    if args.positions:
        topology, xyz = with_positions(args.input, args.positions)
        with open(args.output, "w") as f:
            app.PDBFile.writeFile(topology, xyz * unit.nanometer, f, keepIds=True)
        print(f"{args.output}: {args.input} with the positions of {args.positions}")
        return
    templates = molecule_templates()
    placed, edge = pack(templates, {"EC": args.ec, "EMC": args.emc}, args.density, args.min_distance, args.seed)
    write_pdb(templates, placed, edge, args.output)
    n_atoms = sum(len(x) for _, x in placed)
    print(f"{args.output}: {args.ec} EC + {args.emc} EMC, {n_atoms} atoms, box {edge:.3f} Å, {args.density} g/cm^3")


if __name__ == "__main__":
    main()
