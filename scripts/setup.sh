#!/usr/bin/env bash
# Create a virtual environment (default .venv) and install irad with its test extras.
# Usage: bash scripts/setup.sh [VENV_DIR]
# (Sourced, it only defines its functions: tests call require_recent_torch.)
set -euo pipefail

# The oldest torch irad accepts, as in pyproject.toml: before 2.6, torch.load(weights_only=True),
# how irad reads .pt / .th files, can be made to run code from the file (CVE-2025-32434).
MIN_TORCH="2.6"

# torch_is_recent VERSION: success when VERSION (e.g. 2.5.1+cu121, 2.6.0a0) is >= MIN_TORCH.
torch_is_recent() {
    local found="${1%%+*}" major minor need_major need_minor
    IFS=. read -r major minor _ <<<"$found"
    minor="${minor%%[!0-9]*}"
    IFS=. read -r need_major need_minor <<<"$MIN_TORCH"
    [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
    ((major > need_major || (major == need_major && minor >= need_minor)))
}

# require_recent_torch VERSION [WHERE]: refuse, with what to do, a torch older than MIN_TORCH.
require_recent_torch() {
    local found="$1" where="${2:-this environment}"
    if torch_is_recent "$found"; then
        return 0
    fi
    cat >&2 <<EOF
setup: found torch $found in $where, but irad needs torch >= $MIN_TORCH.
  Before $MIN_TORCH, torch.load(weights_only=True), which irad uses to read .pt/.th files
  safely, can be made to run code from the file (CVE-2025-32434).
  Fix: upgrade it, e.g.  $where/bin/python -m pip install --upgrade 'torch>=$MIN_TORCH'
  (pick the build for your CUDA version at https://pytorch.org/get-started/locally/),
  or delete $where so that this script installs torch ${IRAD_TORCH_VERSION:-2.13.0}; then run
  this script again.
EOF
    return 1
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local venv="${1:-.venv}"
    python3 -m venv "$venv"
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
    python -m pip install -q --upgrade pip
    # Pin torch first. A looser requirement lets pip pull the newest CUDA build (gigabytes); on a
    # GPU machine, install the torch build you want before running this script and it is kept.
    if ! python -c "import torch" 2>/dev/null; then
        python -m pip install -q "torch==${IRAD_TORCH_VERSION:-2.13.0}"
    fi
    local torch_version
    torch_version=$(python -c "import torch; print(torch.__version__.split('+')[0])")
    require_recent_torch "$torch_version" "$venv"
    local constraints
    constraints=$(mktemp)
    echo "torch==${torch_version}" >"$constraints"
    # The constraint stops torchattacks (which declares torchvision) from upgrading torch.
    python -m pip install -q -c "$constraints" -e ".[test,metrics,diffusion,plots]"
    # torchattacks declares torchvision, but irad never imports it. Where no torchvision build
    # matches the installed torch (CPU-only machines: PyPI has only CUDA builds), the one pip
    # chose cannot be imported and breaks other imports (diffusers), so remove it. A working
    # torchvision is kept.
    if ! python -c "import torchvision" 2>/dev/null; then
        python -m pip uninstall -q -y torchvision || true
    fi
    rm -f "$constraints"
    python -c "import irad, torch, torchattacks; print('irad', irad.__version__, 'torch', torch.__version__, 'torchattacks', torchattacks.__version__)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
