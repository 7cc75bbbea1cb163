#!/usr/bin/env bash
# Set up corral on a fresh Debian 12 machine, as root, from the repository root. Idempotent:
# a second run installs nothing and finishes in seconds.
#   1. Debian packages: Docker engine, gVisor, debootstrap (offline base image), git, venv,
#      chromium (the HTML report test opens the report headless)
#   2. .venv with corral and its dev tools (pytest, ruff, mypy: what .ci/run runs)
#   3. `corral doctor --fix`: starts dockerd, registers runsc, mounts the worktree filesystem,
#      bootstraps and builds the images; then `corral doctor` must report ready.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

packages=(docker.io runsc debootstrap tini e2fsprogs git ca-certificates python3-venv chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing packages needs root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=python3
for candidate in python3.12 python3.11 python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $python"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c 'import runner, sandbox, policies, pytest, mypy' 2>/dev/null \
   || [ ! -x .venv/bin/ruff ] || [ pyproject.toml -nt .venv/.corral-installed ]; then
  step "installing corral into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.corral-installed
fi

step "corral doctor --fix"
.venv/bin/corral doctor --fix

# The agent images the tests run real agent CLIs in (mini-swe-agent and aider from PyPI, Claude
# Code and Codex from npm, through the CA bundle): built once here, cached by content hash, so a
# second setup does no work.
for agent in mini-swe-agent aider claude-code codex; do
  step "corral image build --agent $agent"
  .venv/bin/corral image build --agent "$agent"
done
