"""benchmarks/scaling.py: the tiled EC/EMC boxes and the outputs of a quick run (not its timings)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
from openmm import unit

from cgaa_openmm import CGAAPotential

from build_ecemc import BOX, tile  # example_systems/ is on pytest's pythonpath (setup.cfg)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def forces(topology, xyz):
    """Shipped-model forces (kJ/mol/nm) on a box, eager module, one thread (spinning OpenMP threads
    on a busy 2-core machine make it 5x slower)."""
    module = CGAAPotential.load("carbonates-xtb").createModule(topology, grains="molecule")
    x = torch.tensor(xyz, dtype=torch.float32, requires_grad=True)
    box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)), dtype=torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return -torch.autograd.grad(module(x, box), x)[0].numpy()
    finally:
        torch.set_num_threads(threads)


def test_a_tiled_box_is_a_periodic_supercell():
    one, xyz1 = tile(BOX, (1, 1, 1))
    two, xyz2 = tile(BOX, (2, 1, 1))
    assert two.getNumAtoms() == 2 * one.getNumAtoms() == 1600
    assert two.getNumResidues() == 120 and two.getNumBonds() == 2 * one.getNumBonds()
    a = np.array(one.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    np.testing.assert_allclose(np.array(two.getPeriodicBoxVectors().value_in_unit(unit.nanometer)),
                               a * [[2], [1], [1]])
    np.testing.assert_allclose(xyz2[800:], xyz1 + a[0], atol=1e-6)
    # Every copy sees the same surroundings: the same forces as the original box.
    f1, f2 = forces(one, xyz1), forces(two, xyz2)
    np.testing.assert_allclose(f2[:800], f1, atol=1e-2 * np.abs(f1).max())
    np.testing.assert_allclose(f2[800:], f1, atol=1e-2 * np.abs(f1).max())


def test_quick_run_writes_every_output(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "scaling.py"), "--quick", "--sizes", "800",
                    "--output-dir", str(tmp_path)], check=True, cwd=ROOT, timeout=600)
    results = json.loads((tmp_path / "scaling.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 0
    markdown = (tmp_path / "scaling.md").read_text()
    assert "| atoms | model |" in markdown and "intra-grain embedding" in markdown
    assert results["sizes"] == [800] and results["threads"] == 2 and results["machine"]["cpu"]
    for model in ("cgaa", "atom", "mace", "mace-medium", "tip3p"):
        row = results["runs"][model]["800"]
        if model.startswith("mace") and row["status"].startswith("skipped: no MACE venv"):
            continue
        assert row["status"] == "ok", (model, row["status"])
        assert math.isfinite(row["energy_kj_mol"]), model
        assert abs(row["atoms"] - 800) <= 1  # TIP3P: 267 waters
        for key in ("median_ms", "us_per_atom", "ns_per_day", "peak_rss_mb", "eval_rss_mb"):
            assert row[key] > 0, (model, key)
    profile = results["profile"]
    assert profile["status"] == "ok" and math.isfinite(profile["energy_kj_mol"])
    parts = {p["part"]: p for p in profile["parts"]}
    assert set(parts) == {"intra-grain embedding", "centre embedding", "grain products and message passing",
                          "neighbour search / unwrapping", "other"}
    assert parts["intra-grain embedding"]["forward_ms"] > 0 and parts["intra-grain embedding"]["backward_ms"] > 0
    assert profile["top_ops"]
