"""Making forces is cheap: the model is compiled once per potential and precision, shared by every
force; a force made after others equals one made first; a serialized System runs in a fresh process."""
import io
import os
import subprocess
import sys

import numpy as np
import openmm
import pytest
import torch
from ase.io import read
from openmm import unit

from cgaa_openmm import CGAAPotential
from cgaa_openmm.grains import topology_from_atoms

from conftest import data_file


@pytest.fixture(scope="module")
def clusters():
    configs = [a for a in read(data_file("solvent_xtb_train_50.xyz"), index=":")
               if a.info.get("config_type") != "IsolatedAtom"]
    return configs[:6]


def system_of(potential, atoms, precision="double"):
    topology = topology_from_atoms(atoms)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.addForce(potential.createForce(topology, precision=precision))
    return system


def reference_energy_forces(system, atoms):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(atoms.positions * 0.1)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def test_a_force_made_after_other_topologies_equals_one_made_first(clusters):
    target = clusters[-1]
    first = reference_energy_forces(system_of(CGAAPotential.load("carbonates-xtb-fast"), target), target)
    potential = CGAAPotential.load("carbonates-xtb-fast")
    for other in clusters[:2]:
        system_of(potential, other)
    assert [key[0] for key in potential._cores] == [torch.float64]     # one compiled core for all of them
    later = reference_energy_forces(system_of(potential, target), target)
    assert later[0] == first[0]
    np.testing.assert_array_equal(later[1], first[1])
    eager = potential.createModule(topology_from_atoms(target), precision="double")
    positions = torch.tensor(target.positions * 0.1, requires_grad=True)
    energy = eager(positions)
    forces, = torch.autograd.grad(energy, positions)
    assert later[0] == pytest.approx(energy.item(), rel=1e-12)
    np.testing.assert_allclose(later[1], -forces.numpy(), atol=1e-8)
    assert np.abs(later[1]).max() > 10.0


def test_serialized_system_runs_in_a_fresh_process(clusters, tmp_path):
    atoms = clusters[2]
    system = system_of(CGAAPotential.load("carbonates-xtb-fast"), atoms)
    energy, forces = reference_energy_forces(system, atoms)
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    np.save(tmp_path / "positions.npy", atoms.positions * 0.1)
    script = (
        "import sys, numpy as np, torch, openmm, openmmtorch\n"
        "from openmm import unit\n"
        "system = openmm.XmlSerializer.deserialize(open(sys.argv[1] + '/system.xml').read())\n"
        "context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName('Reference'))\n"
        "context.setPositions(np.load(sys.argv[1] + '/positions.npy'))\n"
        "state = context.getState(getEnergy=True, getForces=True)\n"
        "np.save(sys.argv[1] + '/forces.npy', state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))\n"
        "print(repr(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)))\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(energy, rel=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "forces.npy"), forces, rtol=1e-10, atol=1e-8)


def test_making_and_dropping_forces_keeps_no_memory(clusters):
    """A regression guard, not the benchmark (benchmarks/startup.py): after two warm-up forces,
    eight create/drop cycles over different topologies keep well under 30 MB each."""
    potential = CGAAPotential.load("carbonates-xtb-fast")
    for atoms in clusters[:2]:
        system_of(potential, atoms, "single")
    before = rss_mb()
    for k in range(8):
        system = system_of(potential, clusters[k % len(clusters)], "single")
        del system
    assert rss_mb() - before < 8 * 30


def test_the_force_module_moves_to_any_device(clusters):
    """openmm-torch loads the module on the CPU and moves it with ``.to(device)`` to the GPU of a
    CUDA context: no weight may be a constant of the compiled code (freezing makes
    constants of what it does not preserve, and those stay on the CPU). The module a TorchForce
    holds, with both precisions, has none."""
    from cgaa_openmm.torchforce import tensor_constants
    potential = CGAAPotential.load("carbonates-xtb-fast")
    force = potential.createForce(topology_from_atoms(clusters[0]), precision="auto")
    module = torch.jit.load(io.BytesIO(force.getModule().save_to_buffer()))   # as openmm-torch loads it
    assert len(list(module.parameters())) > 20
    assert tensor_constants(module) == []
    # ``.to`` reaches every tensor (shown with a dtype: Python's ``.to`` of a loaded ScriptModule
    # cannot change devices on a machine without GPU, C++'s does).
    module.to(torch.float16)
    assert {t.dtype for t in list(module.parameters()) + list(module.buffers())
            if t.is_floating_point()} == {torch.float16}
    # The guard itself finds the constants a plain freeze leaves.
    frozen = torch.jit.freeze(torch.jit.script(torch.nn.Linear(3, 2).eval()))
    assert sorted(tensor_constants(frozen)) == [(2,), (2, 3)]


def test_a_new_potential_loads_its_compiled_core_from_the_disk_cache(clusters, tmp_path, monkeypatch):
    """A second potential of the same model (as in a new process) loads the compiled core that the
    first one saved, without compiling, and its forces are the first one's to the bit; an unreadable
    file is compiled again and replaced; other weights, kinds or source are other files; an empty
    CGAA_OPENMM_CACHE turns the cache off."""
    from cgaa_openmm import corecache, potential as potential_module
    monkeypatch.setenv("CGAA_OPENMM_CACHE", str(tmp_path))
    atoms = clusters[1]
    first = reference_energy_forces(system_of(CGAAPotential.load("carbonates-xtb-fast"), atoms), atoms)
    files = sorted(tmp_path.glob("core-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def no_compiling(core):
        raise AssertionError("compiled although the cache holds the core")
    with monkeypatch.context() as patch:
        patch.setattr(potential_module, "compiled_core", no_compiling)
        again = reference_energy_forces(system_of(CGAAPotential.load("carbonates-xtb-fast"), atoms), atoms)
    assert again[0] == first[0]
    np.testing.assert_array_equal(again[1], first[1])

    files[0].write_bytes(b"not a TorchScript archive")
    repaired = reference_energy_forces(system_of(CGAAPotential.load("carbonates-xtb-fast"), atoms), atoms)
    np.testing.assert_array_equal(repaired[1], first[1])
    torch.jit.load(str(files[0]))                                    # replaced by a whole file

    potential = CGAAPotential.load("carbonates-xtb-fast")
    kind = dict(periodic=False, select=False, single_group=True)
    key = corecache.core_key(potential.model, torch.float64, kind)
    assert key == files[0].name[len("core-"):-len(".pt")]
    assert corecache.core_key(potential.model, torch.float32, kind) != key
    assert corecache.core_key(potential.model, torch.float64,
                              dict(kind, periodic=True)) != key
    with torch.no_grad():
        next(potential.model.parameters()).add_(1e-3)
    assert corecache.core_key(potential.model, torch.float64, kind) != key
    monkeypatch.setattr(corecache, "source_hash", lambda: "edited")
    assert corecache.core_key(CGAAPotential.load("carbonates-xtb-fast").model, torch.float64, kind) != key

    monkeypatch.setenv("CGAA_OPENMM_CACHE", "")
    off = tmp_path / "off"
    monkeypatch.setenv("XDG_CACHE_HOME", str(off))
    system_of(CGAAPotential.load("carbonates-xtb-fast"), atoms)
    assert corecache.cache_dir() is None and not off.exists()
