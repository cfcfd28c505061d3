"""Files the package needs at run time (package data), as absolute paths.

They are links to the inputs in the repository's ``example_systems/`` (where their builders are),
copied into the package by ``pip install``.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
#: The equilibrated EC/EMC liquid (800 atoms, 60 molecules): ``cgaa-openmm simulate``'s default input.
EXAMPLE_BOX = os.path.join(HERE, "ecemc.pdb")
#: Capped peptides (amber14 names) for ``cgaa-openmm generate-data``, by name.
PEPTIDES = {name: os.path.join(HERE, "peptides", f"{name}.pdb") for name in ("ace-ala-nme", "ace-sfvgt-nme")}
