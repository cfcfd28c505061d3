"""Helpers of the benchmark scripts: the fragment grains of the grain-size ablation."""
import os
import sys
from collections import Counter

from ase.io import read

from cgaa_openmm.grains import hill_formula
from conftest import data_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from accuracy import fragment_ids  # noqa: E402

# Each carbonate splits into its CO3 group and its alkyl parts.
EXPECTED = {"EC": ["CO3", "C2H4"], "PC": ["CO3", "C3H6"], "VC": ["CO3", "C2H2"],
            "DMC": ["CO3", "CH3", "CH3"], "EMC": ["CO3", "CH3", "C2H5"], "DEC": ["CO3", "C2H5", "C2H5"]}


def test_fragment_grains_split_every_carbonate_into_its_co3_group_and_alkyl_parts():
    frames = [a for a in read(data_file("solvent_xtb_train_50.xyz"), index=":")
              if a.info.get("config_type") != "IsolatedAtom"]
    seen = set()
    for atoms in frames:
        fragment = fragment_ids(atoms, atoms.arrays["molID"])
        got = Counter(hill_formula(atoms.numbers[fragment == f]) for f in set(fragment))
        want = Counter()
        for part in atoms.info["Comp"].split(":"):
            name, count = part.rstrip(")").split("(")
            seen.add(name)
            for formula in EXPECTED[name]:
                want[formula] += int(count)
        assert got == want, atoms.info["Comp"]
    assert seen == set(EXPECTED)
