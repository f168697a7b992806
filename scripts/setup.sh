#!/usr/bin/env bash
# Create a virtual environment (default .venv) and install irad with its test extras.
# Usage: bash scripts/setup.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install -q --upgrade pip
# Pin torch first. A looser requirement lets pip pull the newest CUDA build (gigabytes); on a GPU
# machine, install the torch build you want before running this script and it is kept.
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "torch==${IRAD_TORCH_VERSION:-2.13.0}"
fi
torch_version=$(python -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
echo "torch==${torch_version}" > "$constraints"
# The constraint stops torchattacks (which declares torchvision) from upgrading torch.
python -m pip install -q -c "$constraints" -e ".[test,metrics]"
# torchattacks declares torchvision, but irad never imports it. Where no torchvision build matches
# the installed torch (CPU-only machines: PyPI has only CUDA builds), the one pip chose cannot be
# imported and breaks other imports (diffusers), so remove it. A working torchvision is kept.
if ! python -c "import torchvision" 2>/dev/null; then
    python -m pip uninstall -q -y torchvision || true
fi
rm -f "$constraints"
python -c "import irad, torch, torchattacks; print('irad', irad.__version__, 'torch', torch.__version__, 'torchattacks', torchattacks.__version__)"
