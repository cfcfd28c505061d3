"""``python -m cgaa_openmm.cli``: the ``cgaa-openmm`` command."""
from . import main

main()
