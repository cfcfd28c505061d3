"""Making training data: configurations and their reference labels.

Apart from the training loop (``training``) and never importing it: ``clusters`` cuts molecular
clusters out of liquid frames, ``boxes`` makes rigidly rescaled periodic liquid boxes,
``peptides`` samples peptides with classical MD and cuts regions with residue grains, and
``label`` computes GFN2-xTB energies and forces for any of them (tblite).
"""
