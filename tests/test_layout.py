"""The layout's rules: the runtime (``cgaa_openmm``) never imports ``training``, the command line
loads ``training`` only for its training and data subcommands, and a plain (non-editable) install
carries what the runtime needs (docs/model.md, "Map of the code")."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "cgaa_openmm")


def imported_modules(path: str, top_level_only: bool):
    """Names of the modules a file imports (only those at module level if ``top_level_only``)."""
    tree = ast.parse(open(path).read())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def python_files(folder: str):
    for directory, _, files in os.walk(folder):
        yield from (os.path.join(directory, f) for f in files if f.endswith(".py"))


def test_the_runtime_never_imports_training_and_the_cli_only_lazily():
    for path in python_files(PACKAGE):
        in_cli = os.path.join("cgaa_openmm", "cli") in path
        for name in imported_modules(path, top_level_only=in_cli):
            assert name.split(".")[0] != "training", f"{os.path.relpath(path, ROOT)} imports {name}"
    for path in python_files(os.path.join(ROOT, "training", "datagen")):
        for name in imported_modules(path, top_level_only=False):
            assert not (name.startswith("training.") and not name.startswith("training.datagen")), \
                f"data making imports the training loop: {os.path.relpath(path, ROOT)} imports {name}"


def test_create_system_and_simulate_run_with_training_unimportable(tmp_path):
    """With ``import training`` made to fail, the runtime builds a System and evaluates it, and the
    command line parses ``simulate``; a training subcommand then says what is missing."""
    script = """
import sys
sys.modules["training"] = None  # any import of training now raises ImportError
import openmm
from openmm import app, unit
from cgaa_openmm import CGAAPotential
from cgaa_openmm.cli import main
from cgaa_openmm.data import EXAMPLE_BOX
pdb = app.PDBFile(EXAMPLE_BOX)
system = CGAAPotential.load("carbonates-xtb-fast").createSystem(pdb.topology, precision="single")
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions(pdb.positions)
energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
print("energy", energy)
try:
    main(["simulate", "--help"])
except SystemExit as exit:
    assert exit.code == 0
try:
    main(["train", "x.yaml"])
except ImportError as error:
    print("train:", error)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    energy = float(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("energy")))
    assert -3.8e6 < energy < -3.6e6  # kJ/mol: 800 atoms, mostly the atomic reference energies
    assert "usage: cgaa-openmm simulate" in result.stdout
    assert "train: No module named 'training.config'" in result.stdout


@pytest.mark.slow
def test_a_plain_install_runs_the_default_simulation(tmp_path):
    """``pip install .`` (not editable) into a new venv: the console script runs the README's main job
    on the bundled box, read from the installed package's data, from a folder outside the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", ROOT],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import cgaa_openmm; print(cgaa_openmm.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert site.startswith(str(venv)), site  # the installed copy, not the repository's
    run = subprocess.run([str(venv / "bin" / "cgaa-openmm"), "simulate", "--model", "carbonates-xtb-fast",
                          "--threads", "1", "--steps", "2", "--report", "1", "--output", str(tmp_path / "md")],
                         cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    first = run.stdout.splitlines()[0]
    assert first.startswith(os.path.join(os.path.dirname(site), "data", "ecemc.pdb") + ": 800 atoms"), first
    assert (tmp_path / "md" / "log.csv").exists()
