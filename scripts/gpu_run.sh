#!/usr/bin/env bash
# The device command of the GPU check (issue 32): install the carried wheels into two folders
# (scripts/gpu_wheels.txt: CGAA's with e3nn 0.6.0 and openmm, MACE's with e3nn 0.4.4), then run
# scripts/gpu_check.py, its JSON and log under $OUT. Here, once, before a device is lent:
#   the download command in scripts/gpu_wheels.txt (into .whl/), then python scripts/gpu_check.py --prepare
# and on the device: run(command="bash scripts/gpu_run.sh", carry=[".whl", "build/gpu"], timeout_s=540).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-build/gpu/out}"
mkdir -p "$OUT"
install() {  # TAG FOLDER
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$2" $(grep -v '^#' scripts/gpu_wheels.txt \
    | grep "\[[a-z,]*$1" | cut -d' ' -f1 | sed 's|^|.whl/|; s|==|-|; s|$|-*.whl|')
}
install cgaa /tmp/cgaa-site && install mace /tmp/mace-site || exit 3
nvidia-smi 2>&1 | head -15 > "$OUT/nvidia-smi.txt"
# openmm-torch 1.5 is built against torch 2.9; import openmm loads its plugins into this torch. If
# that kills the interpreter (not just a recorded load failure), run without them: the check then
# records that openmm-torch is missing.
PYTHONPATH="/tmp/cgaa-site:$PWD" python3 -c "import torch, openmm, cgaa_openmm" > "$OUT/probe.txt" 2>&1
probe=$?
if [ "$probe" -ne 0 ]; then
  echo "import with the openmm-torch plugins failed (exit $probe): removed them" >> "$OUT/probe.txt"
  rm -rf /tmp/cgaa-site/OpenMM.libs/lib/libOpenMMTorch.so /tmp/cgaa-site/OpenMM.libs/lib/plugins/libOpenMMTorch* \
    /tmp/cgaa-site/_openmmtorch* /tmp/cgaa-site/openmmtorch.py
fi
PYTHONPATH="/tmp/cgaa-site:$PWD" PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --mace-path /tmp/mace-site \
  --output "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu.log"
