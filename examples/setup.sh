#!/usr/bin/env bash
# Create a fresh git repository of the example project in DIR (which must not exist or be empty).
#   bash examples/setup.sh DIR
# The project ships as plain files; corral needs a repository with a commit to fix from.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: bash examples/setup.sh DIR" >&2
    exit 2
fi
dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    echo "error: $dir is not empty: choose a new directory" >&2
    exit 2
fi
mkdir -p "$dir"
cp -R "$here/project/." "$dir/"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="invoicer dev" GIT_AUTHOR_EMAIL="dev@invoicer.invalid"
export GIT_COMMITTER_NAME="invoicer dev" GIT_COMMITTER_EMAIL="dev@invoicer.invalid"
git -C "$dir" init -q -b main
git -C "$dir" add -A
git -C "$dir" commit -q -m "invoicer 0.3.1"
echo "$dir"
