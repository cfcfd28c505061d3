"""scripts/gpu_check.py cannot rot: its ``--cpu --tiny`` mode runs every part on the CPU (the frame
checks, the timed force module, the MACE worker where mace is installed, OpenMM NPT steps), and what
the device machine must be carried stays inside the 64 MiB a device call takes."""
import json
import os
import subprocess
import sys

import numpy as np
import openmm
import pytest
from openmm import app, unit

from cgaa_openmm import CGAAPotential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gpu_check  # noqa: E402

#: import names on the device machine's image (/work/.library/device/KINDS.md, 'Python packages
#: already there') that the check may use without carrying them
DEVICE_IMAGE = {"torch", "torchgen", "triton", "numpy", "sympy", "mpmath", "opt_einsum", "opt_einsum_fx", "tqdm",
                "yaml", "scipy", "packaging", "typing_extensions", "certifi", "colorama", "filelock", "jinja2",
                "markupsafe", "networkx", "fsspec"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    bundle = out / "bundle"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_check.py"), "--prepare", "--bundle",
                    str(bundle)], check=True, cwd=ROOT)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_check.py"), "--cpu", "--tiny", "--bundle",
                    str(bundle), "--output", str(out / "gpu.json")], check=True, cwd=ROOT,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.load(open(out / "gpu.json"))


def test_tiny_run_checks_the_float32_module_against_float64(tiny):
    """Both shipped models, both frames: float32 forces within 1e-4 of the largest float64 force,
    and the frames are real liquid frames (forces of thousands of kJ/mol/nm)."""
    assert set(tiny["checks"]) == set(gpu_check.MODELS)
    for checks in tiny["checks"].values():
        assert set(checks) == set(gpu_check.FRAMES.values())
        for check in checks.values():
            assert check["ok"] and check["atoms"] == 160
            assert check["force_rel"] < gpu_check.FORCE_RTOL and check["energy_rel"] < 1e-6
            assert check["largest_force"] > 1000.0


def test_tiny_run_times_the_module_a_torchforce_runs(tiny):
    """The timed module on the 800-atom box gives the energy an OpenMM CPU Context of
    ``createSystem`` gives (it is the TorchForce's module), with no net force."""
    row = tiny["timings"]["carbonates-xtb-fast"]["800"]
    assert row["status"] == "ok" and row["atoms"] == 800 and len(row["times_ms"]) == 2
    assert row["ns_day_hmr"] == pytest.approx(2 * row["ns_day_1fs"])
    assert row["net_force"] < 1e-3 * row["largest_force"] * np.sqrt(800)
    pdb = app.PDBFile(gpu_check.BOX)
    system = CGAAPotential.load("carbonates-xtb-fast").createSystem(pdb.topology, precision="single")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(pdb.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert row["energy_kj_mol"] == pytest.approx(energy, rel=1e-6)


def test_tiny_run_steps_openmm_and_records_what_it_imported(tiny):
    """NPT steps ran (a liquid's density), and everything imported is on the device image or carried."""
    assert tiny["openmm"]["status"] == "ok" and tiny["openmm"]["steps"] == 10
    assert 0.9 < tiny["openmm"]["density_g_ml"] < 1.5
    carried = {"cgaa_openmm", "e3nn", "openmm", "simtk", "swig_runtime_data5", "openmmtorch", "gpu_check",
               "cython_runtime"}
    assert set(tiny["imported"]) - DEVICE_IMAGE - carried - {name for name in tiny["imported"]
                                                             if name.startswith("_")} == set()
    assert "ase" not in tiny["imported"] and "mdtraj" not in tiny["imported"]
    assert tiny["device"]["versions"]["torch"] and tiny["device"]["versions"]["e3nn"]
    assert "| carbonates-xtb | 800 |" in gpu_check.table(tiny)


def carried_wheels():
    """(name, version, bytes, tags) of every line of scripts/gpu_wheels.txt."""
    rows = []
    for line in open(os.path.join(ROOT, "scripts", "gpu_wheels.txt")):
        if line.strip() and not line.startswith("#"):
            spec, comment = line.split("#", 1)
            name, version = spec.strip().split("==")
            size = int(comment.split("bytes")[0])
            tags = comment.split("[", 1)[1].split("]", 1)[0].split(",")
            rows.append((name, version, size, tags))
    return rows


def test_what_a_device_call_carries_fits_its_64_mib():
    """The listed wheels, the tracked files and the bundle stay under 64 MiB with room to spare;
    each e3nn goes to its own folder; a downloaded .whl/ holds exactly the listed files."""
    wheels = carried_wheels()
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    repo = sum(os.path.getsize(os.path.join(ROOT, f)) for f in tracked if f and os.path.isfile(os.path.join(ROOT, f)))
    total = sum(size for _, _, size, _ in wheels) + repo + 1_000_000    # the bundle's frames: 30 kB
    assert total < 56 * 2**20, f"{total / 2**20:.1f} MiB would travel"
    e3nn = {version: tags for name, version, _, tags in wheels if name == "e3nn"}
    assert e3nn == {"0.4.4": ["mace"], "0.6.0": ["cgaa"]}
    assert {name for name, _, _, tags in wheels if "cgaa" in tags} >= {"openmm", "openmmtorch", "e3nn"}
    folder = os.path.join(ROOT, ".whl")
    if os.path.isdir(folder):
        files = {f: os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)}
        for name, version, size, _ in wheels:
            found = [f for f in files if f.startswith(f"{name}-{version}-")]
            assert len(found) == 1 and files[found[0]] == size, (name, found)
        assert len(files) == len(wheels)
