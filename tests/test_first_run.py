"""A user's first minute: the shipped models load by name, and the README's first command runs quietly,
near 300 K from its first report."""
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from openmm import app

from cgaa_openmm import CGAAPotential
from cgaa_openmm.potential import NAMED_MODELS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "cgaa_openmm", "models")
BOX = os.path.join(ROOT, "example_systems", "ecemc.pdb")
PEPTIDE = os.path.join(ROOT, "example_systems", "peptides", "ace-ala-nme.pdb")
RDX = os.path.join(ROOT, "example_systems", "rdx.pdb")


def tiny_system(name):
    """A few molecules the model was trained on (no box): two EC and one EMC of the example box, the
    capped alanine dipeptide, or two RDX molecules of the crystal cell."""
    if name.startswith("ace-ala-nme"):
        pdb = app.PDBFile(PEPTIDE)
        return pdb.topology, pdb.positions
    pdb = app.PDBFile(RDX if name.startswith("rdx") else BOX)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    residues = list(pdb.topology.residues())
    if name.startswith("rdx"):
        keep = residues[:2]
    else:
        keep = [r for r in residues if r.name == "EC"][:2] + [r for r in residues if r.name == "EMC"][:1]
    modeller.delete([r for r in residues if r not in keep])
    modeller.topology.setPeriodicBoxVectors(None)
    return modeller.topology, modeller.positions


def test_every_shipped_model_file_has_a_name():
    assert sorted(NAMED_MODELS.values()) == sorted(f for f in os.listdir(MODELS) if f.endswith(".pt"))
    assert "ace-ala-nme-xtb" in NAMED_MODELS


@pytest.mark.parametrize("name", sorted(NAMED_MODELS))
def test_shipped_model_by_name_is_the_model_file(name):
    """Loaded by name, each shipped model gives exactly the energy of its file loaded by path."""
    topology, positions = tiny_system(name)
    xyz = torch.tensor([[v.x, v.y, v.z] for v in positions.value_in_unit(positions.unit)])  # nm
    energies = []
    for source in (name, os.path.join(MODELS, NAMED_MODELS[name])):
        potential = CGAAPotential.load(source)
        with torch.no_grad():
            energies.append(potential.createModule(topology)(xyz).item())
    assert torch.isfinite(torch.tensor(energies)).all()
    assert energies[0] == energies[1]


def readme_command():
    """The README's first command after ``pip install -e . &&``, as an argument list."""
    with open(os.path.join(ROOT, "README.md")) as file:
        line = next(line for line in file if line.startswith("pip install -e . && cgaa-openmm simulate"))
    return line.split("&&", 1)[1].split()


@pytest.mark.slow
def test_readme_first_command(tmp_path):
    """The README's ``cgaa-openmm simulate`` command (about a minute on two cores): reports near 300 K from
    the start (an equilibrated box, velocities drawn at 300 K, no minimisation that drains it), and no
    deprecation or other warning on stdout or stderr."""
    command = readme_command()
    assert command[:3] == ["cgaa-openmm", "simulate", "example_systems/ecemc.pdb"]
    (tmp_path / "example_systems").mkdir()    # run where the output directory, ecemc-md/, is new
    shutil.copy(BOX, tmp_path / "example_systems")
    executable = shutil.which("cgaa-openmm") or None
    argv = [executable] + command[1:] if executable else [sys.executable, "-m", "cgaa_openmm.cli"] + command[1:]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not re.search(r"warn|deprecat", output, flags=re.I), output
    rows = [line.split("\t") for line in result.stdout.splitlines() if re.match(r"\d+\t", line)]
    steps = int(command[command.index("--steps") + 1])
    report = int(command[command.index("--report") + 1])
    assert [int(row[0]) for row in rows] == list(range(report, steps + 1, report))
    temperatures = [float(row[2]) for row in rows]
    assert abs(sum(temperatures) / len(temperatures) - 300.0) < 30.0, temperatures
    assert abs(temperatures[0] - 300.0) < 40.0, temperatures


def test_minimiser_works_only_above_its_tolerance(tmp_path):
    """Below ``--minimize-tolerance`` the equilibrated box is kept as it is (the README run checks that);
    above it the minimiser runs, at most ``--minimize`` iterations, and lowers the RMS force."""
    from cgaa_openmm.cli import main
    from cgaa_openmm.simulate import MINIMIZE_TOLERANCE
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        main(["simulate", BOX, "--model", "carbonates-xtb-fast", "--steps", "0", "--minimize", "5",
              "--minimize-tolerance", "100", "--threads", "1", "--output", str(tmp_path / "md")])
    match = re.search(r"minimised: RMS force (\d+) -> (\d+) kJ/mol/nm", output.getvalue())
    assert match, output.getvalue()
    before, after = map(int, match.groups())
    assert after < before < MINIMIZE_TOLERANCE
