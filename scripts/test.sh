#!/usr/bin/env bash
# Set up and run the tests: install cgaa-openmm with its test extras, give OpenMM an
# OpenCL device on the CPU (PoCL, Debian packages) when possible, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p | grep -q 'libOpenCL.so.1' || [ ! -e /etc/OpenCL/vendors/pocl.icd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ocl-icd-libopencl1 pocl-opencl-icd >/dev/null) \
      || echo "note: PoCL not installed; the OpenCL tests will be skipped"
  else
    echo "note: no libOpenCL.so.1/PoCL and no root to install them; the OpenCL tests will be skipped"
  fi
fi
# Tests start several torch processes at once (DDP, CLI runs): idle OpenMP threads that spin
# instead of sleeping make oversubscribed cores up to 10x slower.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q tests "$@"
