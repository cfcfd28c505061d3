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
