"""``cgaa-openmm simulate`` and ``analyze``: bad input, kill -9 and continue, NPT, ParmEd inputs, analysis."""
import csv
import os
import re
import signal
import subprocess
import sys

import mdtraj
import numpy as np
import pytest
import torch
from openmm import app, unit

from cgaa_openmm import analysis
from cgaa_openmm.cli import main

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EXAMPLE = os.path.join(ROOT, "example_systems", "ecemc.pdb")
BOX_NM3 = 2.0165 ** 3
#: Few steps, no minimiser, one thread (the machines running the tests are small and shared).
QUICK = ["--minimize", "0", "--threads", "1"]


@pytest.fixture(autouse=True)
def torch_threads():
    """``--threads`` sets torch's thread count in this process: put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def read_log(path):
    """log.csv as a dict of columns (floats), keyed by the header's names."""
    with open(path) as file:
        rows = list(csv.reader(file))
    header = [name.strip('#"') for name in rows[0]]
    return {name: np.array([float(row[i]) for row in rows[1:]]) for i, name in enumerate(header)}


def checkpoint_step(path):
    with open(path) as file:
        return int(re.search(r'stepCount="(\d+)"', file.read(300)).group(1))


def edited_example(tmp_path, name, edit):
    """ecemc.pdb with ``edit`` applied to its text, written to ``tmp_path/name``."""
    with open(EXAMPLE) as file:
        text = edit(file.read())
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def parmed_files(tmp_path, kind):
    """ecemc.pdb as AMBER (prmtop + rst7) or GROMACS (top + gro) files, with placeholder parameters
    (the CGAA model reads only atoms, residues, bonds, box and coordinates)."""
    import parmed
    structure = parmed.load_file(EXAMPLE)
    types = {}
    for atom in structure.atoms:
        if atom.element_name not in types:
            atom_type = parmed.AtomType(atom.element_name, len(types) + 1, atom.mass, atom.atomic_number)
            atom_type.set_lj_params(0.0, 1.0)
            types[atom.element_name] = atom_type
        atom.atom_type, atom.type = types[atom.element_name], atom.element_name
    structure.bond_types.append(parmed.BondType(0.0, 0.1, list=structure.bond_types))
    for bond in structure.bonds:
        bond.type = structure.bond_types[0]
    names = {"amber": ("ecemc.prmtop", "ecemc.rst7"), "gromacs": ("ecemc.top", "ecemc.gro")}[kind]
    paths = [str(tmp_path / name) for name in names]
    for path in paths:
        structure.save(path)
    return paths


@pytest.mark.parametrize("options, message", [
    pytest.param(["{tmp}/missing.pdb"], "input file not found: .*missing.pdb", id="missing"),
    pytest.param(["{tmp}/box.xyz"], r"unsupported input .*box.xyz \(supported: .pdb", id="extension"),
    pytest.param(["{tmp}/box.prmtop", "{tmp}/box.gro"], r"box.prmtop \(AMBER topology\) does not go with",
                 id="mixed pair"),
    pytest.param(["{tmp}/nitrogen.pdb"], "atom 0 .* is N, an element this model does not know", id="element"),
    pytest.param([EXAMPLE, "--grains", "atom"], "formula C, which is not a grain this model was trained on",
                 id="grain"),
    pytest.param(["{tmp}/small.pdb"], "small.pdb: periodic box too small", id="small box"),
    pytest.param([EXAMPLE, "--platform", "NoSuchPlatform"], "platform 'NoSuchPlatform' is not available here",
                 id="platform"),
    pytest.param(["{tmp}/cluster.pdb", "--ensemble", "NPT"], "NPT needs a periodic box, and .* has none",
                 id="npt without box"),
    pytest.param([EXAMPLE, "--model", "{tmp}/missing.pt"], "neither a model file nor a shipped model", id="model"),
])
def test_bad_input_is_a_clear_error(tmp_path, options, message):
    for name in ("box.xyz", "box.prmtop", "box.gro"):
        (tmp_path / name).write_text("")
    def nitrogen_first(text):
        first = re.search(r"^HETATM    1  C1 .*$", text, re.M).group(0)
        return text.replace(first, first.replace("  C1 ", "  N1 ")[:-3] + "N  ", 1)
    edited_example(tmp_path, "nitrogen.pdb", nitrogen_first)
    edited_example(tmp_path, "small.pdb", lambda t: t.replace("CRYST1   20.165   20.165   20.165",
                                                              "CRYST1   10.000   10.000   10.000"))
    edited_example(tmp_path, "cluster.pdb", lambda t: re.sub(r"CRYST1.*\n", "", t))
    args = ["simulate"] + [o.format(tmp=tmp_path) for o in options] + ["--output", str(tmp_path / "out")] + QUICK
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert re.search(message, str(exit_info.value.code)), exit_info.value.code
    assert str(exit_info.value.code).startswith("cgaa-openmm simulate: ")
    assert not os.path.exists(tmp_path / "out")


def test_box_shrunk_too_far_during_md(tmp_path):
    """A barostat move below twice the cutoff (12 Å) stops MD with the model's message, not a traceback."""
    edge = edited_example(tmp_path, "edge.pdb", lambda t: t.replace("CRYST1   20.165   20.165   20.165",
                                                                    "CRYST1   12.001   12.001   12.001"))
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", edge, "--ensemble", "NPT", "--barostat-interval", "1", "--steps", "10", "--report", "10",
              "--output", str(tmp_path / "out")] + QUICK)
    message = str(exit_info.value.code)
    assert re.match(r"cgaa-openmm simulate: MD stopped at step \d: periodic box too small: its face-to-face "
                    r"widths are \[11\.9", message), message
    assert "Traceback" not in message and message.endswith("is kept)")


def test_error_on_the_command_line_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cgaa_openmm.cli", "simulate", str(tmp_path / "x.pdb")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "input file not found" in result.stderr


def test_killed_run_continues_from_its_checkpoint(tmp_path, capsys):
    """SIGKILL after the first checkpoint; the same command continues from it (even on another platform):
    every step once."""
    output = tmp_path / "run"
    command = [sys.executable, "-m", "cgaa_openmm.cli", "simulate", EXAMPLE, "--steps", "4", "--report", "2",
               "--trajectory-interval", "1", "--checkpoint-interval", "1", "--output", str(output)] + QUICK
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    for line in process.stdout:                  # step 2 is printed after the checkpoint of step 1 was written
        if line.split("\t")[0] == "2":
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    step = checkpoint_step(output / "checkpoint.xml")
    assert step in (1, 2)
    before = mdtraj.load(str(output / "trajectory.dcd"), top=str(output / "topology.pdb"))
    assert before.n_frames >= step

    main(command[3:] + ["--platform", "Reference"])     # the same run, here (saves time), on another platform
    assert f"resumed from step {step}" in capsys.readouterr().out
    log = read_log(output / "log.csv")
    assert log["Step"].tolist() == [2, 4]
    assert np.allclose(log["Time (ps)"], log["Step"] * 0.0005)
    after = mdtraj.load(str(output / "trajectory.dcd"), top=str(output / "topology.pdb"))
    assert after.n_frames == 4
    assert np.array_equal(after.xyz[:step], before.xyz[:step])        # appended, not rewritten
    assert checkpoint_step(output / "checkpoint.xml") == 4
    summary = analysis.analyze(str(output / "trajectory.dcd"))        # topology.pdb found beside it
    assert summary["time_ps"] == [0.0005, 0.002]
    assert summary["density_g_per_ml"]["mean"] == pytest.approx(log["Density (g/mL)"][0], rel=1e-5)

    main(command[3:])
    assert "already holds 4 steps (--steps 4): nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="other settings .*timestep 0.5 -> 1.0"):
        main(command[3:] + ["--timestep", "1"])


@pytest.mark.parametrize("barostat", ["isotropic", "anisotropic"])
def test_npt_changes_the_box(tmp_path, barostat):
    main(["simulate", EXAMPLE, "--ensemble", "NPT", "--barostat", barostat, "--barostat-interval", "1",
          "--steps", "4", "--report", "4", "--trajectory-interval", "4", "--output", str(tmp_path)] + QUICK)
    lengths = mdtraj.load(str(tmp_path / "trajectory.dcd"), top=str(tmp_path / "topology.pdb")).unitcell_lengths[0]
    volume = read_log(tmp_path / "log.csv")["Box Volume (nm^3)"][0]
    assert volume != pytest.approx(BOX_NM3, rel=1e-6)
    assert volume == pytest.approx(np.prod(lengths), rel=1e-5)
    if barostat == "isotropic":
        assert lengths == pytest.approx([lengths[0]] * 3, rel=1e-6)
    else:
        assert len(set(np.round(lengths, 6))) > 1


@pytest.fixture(scope="module")
def pdb_log(tmp_path_factory):
    """One NVT step of ecemc.pdb: the reference for the same system read from other formats."""
    output = tmp_path_factory.mktemp("pdb")
    main(["simulate", EXAMPLE, "--steps", "1", "--report", "1", "--output", str(output)] + QUICK)
    return read_log(output / "log.csv")


@pytest.mark.parametrize("kind, tolerance", [("amber", 1e-6), ("gromacs", 1e-4)])   # .gro: 0.01 Å precision
def test_parmed_inputs(tmp_path, pdb_log, kind, tolerance):
    files = parmed_files(tmp_path, kind)
    main(["simulate", *files, "--steps", "1", "--report", "1", "--output", str(tmp_path / "out")] + QUICK)
    log = read_log(tmp_path / "out" / "log.csv")
    assert log["Box Volume (nm^3)"][0] == pytest.approx(BOX_NM3, rel=1e-6)         # the box from the input
    assert log["Potential Energy (kJ/mole)"][0] == pytest.approx(pdb_log["Potential Energy (kJ/mole)"][0],
                                                                 rel=tolerance)
    top = app.PDBFile(str(tmp_path / "out" / "topology.pdb")).topology
    assert [r.name for r in top.residues()] == [r.name for r in app.PDBFile(EXAMPLE).topology.residues()]
    assert top.getNumBonds() == 760


def random_liquid(tmp_path, n_molecules=200, edges_nm=(3.0, 3.1, 2.9, 3.05), top_name="liquid.pdb"):
    """EC molecules (the first of ecemc.pdb) at uniformly random centres of mass and orientations, atoms
    wrapped into the box one by one (molecules cut by the boundary); one frame per box edge (nm).
    Returns the DCD and topology (PDB or PDBx) paths, the centres of mass of every frame (nm) and the
    molar mass of EC (g/mol)."""
    from scipy.spatial.transform import Rotation
    pdb = app.PDBFile(EXAMPLE)
    ec = next(pdb.topology.residues())
    atoms = [a.index for a in ec.atoms()]
    x = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[atoms]
    mass = np.array([a.element.mass.value_in_unit(unit.dalton) for a in ec.atoms()])
    x -= mass @ x / mass.sum()
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(n_molecules):
        residue = topology.addResidue("EC", chain)
        added = {a.index: topology.addAtom(a.name, a.element, residue) for a in ec.atoms()}
        for bond in ec.bonds():
            topology.addBond(added[bond[0].index], added[bond[1].index])
    topology.setPeriodicBoxVectors(np.eye(3) * edges_nm[0] * unit.nanometer)
    rng = np.random.default_rng(7)
    top_path, dcd_path, centres = str(tmp_path / top_name), str(tmp_path / "liquid.dcd"), []
    writer = app.PDBxFile if top_name.endswith(".cif") else app.PDBFile
    with open(dcd_path, "wb") as file:
        dcd = app.DCDFile(file, topology, 0.5 * unit.femtosecond, firstStep=10, interval=10)
        for edge in edges_nm:
            com = rng.uniform(0, edge, (n_molecules, 3))
            rotations = Rotation.random(n_molecules, random_state=rng).as_matrix()
            xyz = (com[:, None] + np.einsum("mij,aj->mai", rotations, x)).reshape(-1, 3) % edge
            if not centres:
                with open(top_path, "w") as top:
                    writer.writeFile(topology, xyz * 10 * unit.angstrom, top)
            dcd.writeModel(xyz * unit.nanometer, periodicBoxVectors=np.eye(3) * edge * unit.nanometer)
            centres.append(com)
    return dcd_path, top_path, np.array(centres), mass.sum()


def test_analysis_of_an_ideal_gas(tmp_path):
    """Random molecules: g(r) of the centres is 1, the centres are found, density is mass / volume."""
    edges = (3.0, 3.1, 2.9, 3.05)
    dcd, _, centres, molar_mass = random_liquid(tmp_path, edges_nm=edges, top_name="topology.cif")
    traj = analysis.load_trajectory(dcd)                                             # finds topology.cif
    assert traj.topology.n_bonds == 200 * 10
    assert traj.time == pytest.approx([0.005, 0.010, 0.015, 0.020])                # steps 10, 20, ... of 0.5 fs
    found = analysis.molecule_centres(traj).xyz
    shift = found - centres - np.round((found - centres) / np.array(edges)[:, None, None]) * np.array(
        edges)[:, None, None]
    assert np.abs(shift).max() < 1e-4                                                # equal up to a box vector

    summary = analysis.analyze(dcd, pair=[["name C2"]], output=str(tmp_path / "out"))
    # 200 molecules of 88.06 g/mol; 1 g/mol per nm³ is 1.66054e-3 g/mL.
    expected = 200 * molar_mass / np.array(edges) ** 3 * 1.66053907e-3
    with open(tmp_path / "out" / "density.csv") as file:
        rho = np.array([float(row[2]) for row in list(csv.reader(file))[1:]])
    assert rho == pytest.approx(expected, rel=1e-5)
    assert summary["density_g_per_ml"]["mean"] == pytest.approx(expected.mean(), rel=1e-5)
    assert summary["r_max_nm"] == pytest.approx(1.45, rel=1e-5)
    with open(tmp_path / "out" / "rdf.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["r (nm)", "COM EC-EC", "name C2"]
    r, g_com, g_c2 = np.array(rows[1:], dtype=float).T
    far = r > 0.4
    for g in (g_com, g_c2):
        assert g[far].mean() == pytest.approx(1.0, abs=0.03)
        assert np.abs(g[far] - 1).max() < 0.35
    for name in ("rdf.png", "density.png", "analysis.json"):
        assert os.path.getsize(tmp_path / "out" / name) > 0


def test_analysis_errors(tmp_path):
    with pytest.raises(SystemExit, match="cgaa-openmm analyze: file not found: .*missing.dcd"):
        main(["analyze", str(tmp_path / "missing.dcd"), "--top", EXAMPLE])
    dcd, top, _, _ = random_liquid(tmp_path, n_molecules=5, edges_nm=(3.0,))
    with pytest.raises(SystemExit, match="matches no atom pairs"):
        main(["analyze", dcd, "--top", top, "--pair", "name XX", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="one or two selections"):
        main(["analyze", dcd, "--top", top, "--pair", "name C1", "name C2", "name C3"])
    no_box = edited_example(tmp_path, "cluster.pdb", lambda t: re.sub(r"CRYST1.*\n", "", t))
    with pytest.raises(SystemExit, match="no periodic box"):
        main(["analyze", no_box, "--top", no_box])


def test_block_average_on_a_hand_checkable_series():
    from cgaa_openmm.analysis import AnalysisError, block_average
    mean, error = block_average([1, 1, 2, 2, 3, 3, 4, 4, 5, 5], blocks=5)
    assert mean == 3.0
    assert error == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
    with pytest.raises(AnalysisError, match="at least 5 frames"):
        block_average([1.0, 2.0], blocks=5)
