#!/usr/bin/env bash
# The whole test suite, from a fresh checkout or with the virtual environments already in place (then it is quick).
#
#   1. .venv        transformers 5.x with the [train,test,reference,ort] extras: ruff check, ruff format --check and
#                   every test (slow and reference ones included) except the `optimum` ones (optimum-onnx 0.1 needs
#                   transformers < 4.58; ONNX export goes through torch.onnx here).
#   2. .venv-tf457  transformers 4.57.x with the [train,test,onnx] extras (Optimum's exporter): every test except
#                   the `reference` ones (the original rfdetr package needs transformers 5).
#
# torch and torchvision are pinned in the same pip command as everything that depends on them, so pip keeps the
# local build instead of downloading another one. Nothing is fetched from the Hugging Face Hub (HF_HUB_OFFLINE=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
PYTHON=${PYTHON:-python3}
SUMMARY=()
SECONDS=0
stage_start=0
CURRENT="setup"
TF_MAIN="?"
TF_457="?"

stage() { # stage NAME: print a header and start its clock
    stage_start=$SECONDS
    CURRENT=$1
    printf '\n==> %s\n' "$1"
}

done_stage() { # done_stage TEXT: record TEXT with the stage's duration for the summary
    SUMMARY+=("$(printf '%-58s %4ss' "$1" $((SECONDS - stage_start)))")
}

pip_install() { # pip_install VENV ARGS...: quiet install; errors are shown, the harmless /opt/pypi* notices dropped
    local venv=$1
    shift
    "$venv/bin/python3" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }
}

on_exit() { # the summary, also when a step failed
    local status=$?
    printf '\n==> summary\n'
    if ((${#SUMMARY[@]})); then printf '  %s\n' "${SUMMARY[@]}"; fi
    if ((status)); then
        printf 'FAILED (exit %s) during: %s\n' "$status" "$CURRENT"
    else
        printf 'ALL PASSED in %ss: ruff; pytest with transformers %s (not optimum) and %s (not reference)\n' \
            "$SECONDS" "$TF_MAIN" "$TF_457"
    fi
}
trap on_exit EXIT

make_venv() { # make_venv VENV: create it if missing
    if [[ ! -x "$1/bin/python3" ]]; then
        "$PYTHON" -m venv "$1"
    fi
}

transformers_version() {
    "$1/bin/python3" -c "import transformers; print(transformers.__version__)"
}

# ---------------------------------------------------------------------------------------------- env 1: transformers 5
stage "env 1 (.venv): install torch 2.14.1 + hf_rfdetr[train,test,reference,ort]"
make_venv .venv
pip_install .venv "${TORCH_PINS[@]}" -e ".[train,test,reference,ort]"
TF_MAIN=$(transformers_version .venv)
done_stage "env 1 install (transformers $TF_MAIN)"

stage "ruff check + ruff format --check"
LINT_DIRS=()
for dir in src tests conversion examples benchmarks; do
    if [[ -d $dir ]]; then LINT_DIRS+=("$dir"); fi
done
.venv/bin/ruff check "${LINT_DIRS[@]}"
.venv/bin/ruff format --check "${LINT_DIRS[@]}"
done_stage "ruff (${LINT_DIRS[*]})"

stage "env 1: pytest -m 'not optimum' (transformers $TF_MAIN)"
.venv/bin/python3 -m pytest -q --durations=10 -m "not optimum"
done_stage "env 1 pytest -m 'not optimum' (transformers $TF_MAIN)"

# ------------------------------------------------------------------------------------------- env 2: transformers 4.57
stage "env 2 (.venv-tf457): install torch 2.14.1 + transformers 4.57.x + hf_rfdetr[train,test,onnx]"
make_venv .venv-tf457
pip_install .venv-tf457 "${TORCH_PINS[@]}" "transformers>=4.57,<4.58" -e ".[train,test,onnx]"
TF_457=$(transformers_version .venv-tf457)
done_stage "env 2 install (transformers $TF_457)"

stage "env 2: pytest -m 'not reference' (transformers $TF_457)"
.venv-tf457/bin/python3 -m pytest -q --durations=10 -m "not reference"
done_stage "env 2 pytest -m 'not reference' (transformers $TF_457)"

