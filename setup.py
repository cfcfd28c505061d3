"""cgaa-openmm: coarse-grained all-atom machine-learning force fields for OpenMM."""
import re

from setuptools import find_packages, setup

# The version lives in one place, the package.
VERSION = re.search(r'^__version__ = "([^"]+)"', open("cgaa_openmm/__init__.py").read(), re.M).group(1)

setup(
    name="cgaa-openmm",
    version=VERSION,
    description="Coarse-grained all-atom (CGAA) equivariant ML force fields as OpenMM TorchForces",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["cgaa_openmm", "cgaa_openmm.*", "training", "training.*"]),
    package_data={"cgaa_openmm": ["models/*.pt"], "cgaa_openmm.data": ["*.pdb", "peptides/*.pdb"]},
    install_requires=[
        # The set verified together: openmmtorch 1.5 is built against torch 2.9 and OpenMM 8.4
        # (PyPI's default torch build; OpenMM 8.5+ breaks the OpenCL plugin of openmmtorch 1.5).
        "torch==2.9.1",
        "openmm==8.4.0.post2",
        "openmmtorch==1.5",
        "e3nn==0.6.0",       # irreps, spherical harmonics, tensor products
        "openmmml==1.4",     # MLPotential("cgaa"): the last openmm-ml release that allows OpenMM 8.4
        "mdtraj",            # molecules from bonds, trajectory analysis
        "parmed",            # AMBER/GROMACS/CHARMM topologies
        "ase",               # extended XYZ reading for training data
        "scipy",             # periodic KD-tree for the example-box builder
        "numpy",
        "pyyaml",            # training configs
        "tqdm",              # progress bars
        "matplotlib",        # parity and learning-curve plots
        "tblite==0.8.0",     # GFN2-xTB labels for new configurations (the level of the carbonate data)
    ],
    extras_require={
        "test": ["pytest", "mkdocs==1.6.1",     # mkdocs: the docs site, built --strict by the tests
                 "ruff==0.14.6"],                     # lint (ruff.toml), run by tests/test_lint.py
        # CUDA platform plugins of OpenMM and openmm-torch for PyPI's torch (CUDA 12.8): docs/gpu.md
        "cuda12": ["openmm[cuda12]==8.4.0.post2", "openmmtorch[cuda12]==1.5"],
    },
    entry_points={
        "console_scripts": ["cgaa-openmm=cgaa_openmm.cli:main"],
        "openmmml.potentials": ["cgaa = cgaa_openmm.openmmml_plugin:CGAAPotentialImplFactory"],
    },
)
