"""The repository passes its lint configuration (ruff.toml) and states its version once."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format=concise", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_is_the_package_one():
    from importlib.metadata import version

    import cgaa_openmm
    assert version("cgaa-openmm") == cgaa_openmm.__version__
    assert not re.search(r"version=\"", open(os.path.join(ROOT, "setup.py")).read())
