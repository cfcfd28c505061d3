"""The documentation: the site builds without warnings and every page's Python code runs as written.

A page's ```python blocks run in order as one script, from the repository root. A page whose code
needs hardware CI does not have opts out with a comment ``<!-- docs-test: skip REASON -->``.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_site_builds_without_warnings(tmp_path):
    if shutil.which("mkdocs") is None:
        pytest.fail("mkdocs is not installed (it is in the test extras: pip install -e '.[test]')")
    result = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", [os.path.relpath(p, ROOT) for p in PAGES])
def test_page_code_runs(page, tmp_path):
    text = open(os.path.join(ROOT, page)).read()
    skip = re.search(r"<!-- docs-test: skip (.*?) -->", text)
    if skip:
        pytest.skip(f"{page}: {skip.group(1)}")
    blocks = python_blocks(text)
    if not blocks:
        pytest.skip(f"{page} has no Python code")
    script = tmp_path / "page.py"
    script.write_text("\n".join(blocks))
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page}:\n{result.stderr[-3000:]}"


#: The walk-through of docs/rdx.md at a tiny size: (what the page says, what the test runs). A
#: one-epoch model is not minimised (its minimum is no crystal: the minimiser tears molecules apart).
TINY = [("--count 60", "--count 3"), ("epochs: 60", "epochs: 1"), ("stage_two_epoch: 46", "stage_two_epoch: 1"),
        ("epochs: 40", "epochs: 1"), ("stage_two_epoch: 31", "stage_two_epoch: 1"),
        ("--steps 5000", "--steps 10 --trajectory-interval 5 --report 5 --minimize 0"), ("--n 24", "--n 2")]


@pytest.mark.slow
def test_rdx_walkthrough_runs_as_written_at_a_tiny_size(tmp_path):
    """docs/rdx.md's command-line walk-through, structure to fine-tuned model (labels from GFN2-xTB
    for 3 + 2 cells: a few minutes), with only the sizes of TINY changed and rdx-work/ in a temporary
    folder: every command succeeds and leaves what the next one reads."""
    text = open(os.path.join(ROOT, "docs", "rdx.md")).read()
    script = re.search(r"<!-- docs-test: walkthrough -->\n```bash\n(.*?)^```", text, flags=re.S | re.M).group(1)
    for written, tiny in TINY:
        assert written in script, f"docs/rdx.md no longer says {written!r}: update TINY"
        script = script.replace(written, tiny)
    work = str(tmp_path / "rdx-work")
    script = script.replace("rdx-work", work)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=1200, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for name in ("rdx.pdb", "rdx-2x2x2.pdb", "frames-gfn2.xyz", "rdx.pt", "parity.png", "npt/checkpoint.xml",
                 "round1-gfn2.xyz", "rdx-round1.pt"):
        assert os.path.exists(os.path.join(work, name)), name
