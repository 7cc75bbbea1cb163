#!/usr/bin/env bash
# Set up corral on a fresh Debian 12 machine, as root, from the repository root. Idempotent:
# a second run installs nothing and finishes in seconds.
#   1. Debian packages: Docker engine, gVisor, debootstrap (offline base image), git, venv,
#      chromium (the HTML report test opens the report headless)
#   2. .venv with corral and its dev tools (pytest, ruff, mypy: what .ci/run runs)
#   3. `corral doctor --fix`: starts dockerd, registers runsc, mounts the worktree filesystem,
#      bootstraps and builds the images; then `corral doctor` must report ready.
# Only what the README's first command needs: agent-CLI images are built on first use. Every
# step that takes more than a few seconds prints its progress as it goes.
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
  # one line per package unpacked: chromium and the engine are a few minutes on a fresh machine
  apt-get install -y -q "${missing[@]}" | awk '/^Unpacking /{print "  " $2; fflush()}'
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
  # one line per package it collects (the progress of a first install, a minute or so)
  .venv/bin/pip install --disable-pip-version-check --progress-bar off -e '.[dev]' \
    | awk '/^Collecting /{print "  " $2; fflush()} /^Successfully installed/{print "  installed"}'
  touch .venv/.corral-installed
fi

step "corral doctor --fix (a fresh machine: debootstrap and the sandbox image, a minute or two)"
.venv/bin/corral doctor --fix

# Nothing more: the agent-CLI images (aider, mini-swe-agent, Claude Code, Codex; a minute or two
# each) are built where they are first needed, each cached by its recipe's hash: by `corral run
# --agent cli:NAME`, by `corral image build --agent NAME`, and by the tests that run those agents
# (the `agent_image` fixture, once a session).
