#!/usr/bin/env bash
# Set up duo-ai in ./.venv.
#   bash scripts/setup.sh          # the package and its command-line tool
#   bash scripts/setup.sh --dev    # plus the test, lint and documentation tools
#
# torch: a bare `pip install torch` on a machine without torch pulls a multi-GB CUDA build.
# - If the Python that runs this script already has torch (say your CUDA build), the venv is made
#   with --system-site-packages and keeps using it.
# - Else, with an NVIDIA GPU present, pip installs the default (CUDA) torch.
# - Else it installs $DUO_AI_TORCH (default torch==2.13.0; on machines whose package index serves
#   CUDA wheels for that, point pip at a CPU wheel index with PIP_EXTRA_INDEX_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if [ ! -x .venv/bin/python ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "setup: reusing the torch of $PYTHON ($("$PYTHON" -c 'import torch; print(torch.__version__)'))"
    "$PYTHON" -m venv --system-site-packages .venv
  else
    "$PYTHON" -m venv .venv
  fi
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" torch
  else
    "${pip[@]}" "${DUO_AI_TORCH:-torch==2.13.0}"
  fi
fi
"${pip[@]}" -e ".${extras}"
echo "setup: done; torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), run .venv/bin/duo-ai --help"
