#!/usr/bin/env bash
# The whole test suite, from a fresh checkout or with the virtual environments already in place (then it is quick).
#
#   1. .venv        transformers 5.x with the [train,test,reference,ort] extras: ruff check, ruff format --check and
#                   every test (slow and reference ones included) except the `optimum` ones (optimum-onnx 0.1 needs
#                   transformers < 4.58; ONNX export goes through torch.onnx here).
#   2. .venv-tf457  transformers 4.57.x with the [train,test,onnx] extras (Optimum's exporter): every test except
#                   the `reference` ones (the original rfdetr package needs transformers 5).
#
# Versions: each environment installs from its constraints file (constraints/*.txt, the tested stack, every package
# pinned), so the command resolves the same versions on every machine; an existing environment is brought to those
# pins. `--latest` instead resolves the newest releases into separate environments (.venv-latest,
# .venv-latest-tf457); `--latest --lock` then rewrites the constraints files from them when everything passed.
#
# Both environments run even when the first fails; the exit status is non-zero if any stage failed.
# torch and torchvision are pinned in the same pip command as everything that depends on them, so pip keeps the
# local build instead of downloading another one. Nothing is fetched from the Hugging Face Hub (HF_HUB_OFFLINE=1).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
# One pytest-xdist worker per core (at most 4), each with its share of the cores for torch (tests/conftest.py). Most
# tests run small models that keep one core busy at most: on 2 cores, env 1's suite took 754 s in 2 workers against
# 1427 s in one process. Each file's tests stay together in one worker, in their order (--dist loadfile): README's
# blocks (tests/test_readme.py) build on each other, as a reader runs them.
PYTEST_ARGS=(-q --durations=10 -n auto --maxprocesses=4 --dist loadfile)
PYTHON=${PYTHON:-python3}
LATEST=0
LOCK=0
for arg in "$@"; do
    case $arg in
        --latest) LATEST=1 ;;
        --lock) LOCK=1 ;;
        -h | --help)
            sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "scripts/test.sh: unknown argument '$arg' (expected --latest, --lock)" >&2
            exit 2
            ;;
    esac
done
if ((LOCK && !LATEST)); then
    echo "scripts/test.sh: --lock needs --latest (it pins what --latest resolved)" >&2
    exit 2
fi

ENV1=.venv
ENV2=.venv-tf457
CONSTRAINTS1=constraints/transformers5.txt
CONSTRAINTS2=constraints/transformers457.txt
if ((LATEST)); then
    ENV1=.venv-latest
    ENV2=.venv-latest-tf457
fi

SUMMARY=()
FAILED=()
SECONDS=0

pip_install() { # pip_install VENV CONSTRAINTS ARGS...: quiet install (pinned unless --latest); the /opt/pypi* notices dropped
    local venv=$1 constraints=$2
    shift 2
    local pins=()
    if ((!LATEST)); then pins=(-c "$constraints"); fi
    "$venv/bin/python3" -m pip install -q "${pins[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }
}

run_stage() { # run_stage NAME COMMAND...: run it, timed; a failure is recorded and the script goes on
    local name=$1 start=$SECONDS status
    shift
    printf '\n==> %s\n' "$name"
    "$@"
    status=$?
    SUMMARY+=("$(printf '%-66s %5ss  %s' "$name" $((SECONDS - start)) "$( ((status)) && echo "FAILED ($status)" || echo ok)")")
    ((status)) && FAILED+=("$name")
    return $status
}

make_env() { # make_env VENV CONSTRAINTS ARGS...: create it if missing, then install into it
    local venv=$1
    if ((LATEST)); then rm -rf "$venv"; fi # the newest releases: always resolved afresh
    if [[ ! -x "$venv/bin/python3" ]]; then
        "$PYTHON" -m venv "$venv" || return
    fi
    pip_install "$@"
}

transformers_version() {
    "$1/bin/python3" -c "import transformers; print(transformers.__version__)" 2>/dev/null || echo "?"
}

lint() {
    local dirs=() dir
    for dir in src tests conversion examples benchmarks scripts; do
        if [[ -d $dir ]]; then dirs+=("$dir"); fi
    done
    "$ENV1/bin/ruff" check "${dirs[@]}" && "$ENV1/bin/ruff" format --check "${dirs[@]}"
}

lock() { # write each environment's resolved versions (without the project itself) to its constraints file
    local venv=$1 file=$2
    {
        echo "# The tested stack for scripts/test.sh ($venv), from 'pip freeze' of the environment that passed the suite on $(date -u +%F)."
        echo "# Regenerate with 'scripts/test.sh --latest --lock'."
        "$venv/bin/python3" -m pip freeze --exclude-editable | grep -v '^hf[-_]rfdetr'
    } >"$file.tmp" && mv "$file.tmp" "$file"
    echo "wrote $file"
}

on_exit() {
    printf '\n==> summary (%s)\n' "$( ((LATEST)) && echo "newest releases" || echo "pinned: constraints/")"
    printf '  %s\n' "${SUMMARY[@]}"
    if ((${#FAILED[@]})); then
        printf 'FAILED in %ss: %s\n' "$SECONDS" "$(IFS=';'; echo "${FAILED[*]}")"
    else
        printf 'ALL PASSED in %ss: ruff; pytest with transformers %s (not optimum) and %s (not reference)\n' \
            "$SECONDS" "$(transformers_version "$ENV1")" "$(transformers_version "$ENV2")"
    fi
}
trap on_exit EXIT

# ---------------------------------------------------------------------------------------------- env 1: transformers 5
if run_stage "env 1 ($ENV1): install torch 2.14.1 + hf_rfdetr[train,test,reference,ort]" \
    make_env "$ENV1" "$CONSTRAINTS1" "${TORCH_PINS[@]}" -e ".[train,test,reference,ort]"; then
    run_stage "ruff check + ruff format --check" lint
    run_stage "env 1: transformers' test mixins -> .transformers-tests/" "$ENV1/bin/python3" scripts/fetch_transformers_tests.py
    run_stage "env 1: pytest -m 'not optimum' (transformers $(transformers_version "$ENV1"))" \
        "$ENV1/bin/python3" -m pytest "${PYTEST_ARGS[@]}" -m "not optimum"
fi

# ------------------------------------------------------------------------------------------- env 2: transformers 4.57
if run_stage "env 2 ($ENV2): install torch 2.14.1 + transformers 4.57.x + hf_rfdetr[train,test,onnx]" \
    make_env "$ENV2" "$CONSTRAINTS2" "${TORCH_PINS[@]}" "transformers>=4.57,<4.58" -e ".[train,test,onnx]"; then
    run_stage "env 2: transformers' test mixins -> .transformers-tests/" "$ENV2/bin/python3" scripts/fetch_transformers_tests.py
    run_stage "env 2: pytest -m 'not reference' (transformers $(transformers_version "$ENV2"))" \
        "$ENV2/bin/python3" -m pytest "${PYTEST_ARGS[@]}" -m "not reference"
fi

if ((${#FAILED[@]})); then
    exit 1
fi
if ((LOCK)); then
    lock "$ENV1" "$CONSTRAINTS1"
    lock "$ENV2" "$CONSTRAINTS2"
fi
