#!/usr/bin/env bash
# Run one bundled story end to end and print the review:
#   bash examples/run.sh [STORY] [corral run options...]
# STORY is discount (passes first time), quoted-names (a rollback, a denied command, then a fix)
# or weekend-due-date (never passes). Without options the story's scripted agent runs (no API
# key); with --model/--base-url a real model works on the same bug instead (the key from
# $CORRAL_API_KEY or --api-key-file). Either way the run's review is the last thing shown.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
corral=${CORRAL:-$root/.venv/bin/corral}
story=${1:-discount}
[ $# -gt 0 ] && shift
if [ ! -f "$here/bugs/$story.md" ]; then
    echo "error: no story $story: use one of $(cd "$here/bugs" && ls | sed 's/\.md$//' | tr '\n' ' ')" >&2
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/corral-example-$story.XXXXXX")
bash "$here/setup.sh" "$work/repo" >/dev/null
run_id="example-$story-$(date -u +%Y%m%d-%H%M%S)-$RANDOM"
agent=()
[ $# -eq 0 ] && agent=(--agent "scripted:$here/agents/$story.toml")
status=0
"$corral" run --repo "$work/repo" --bug "$here/bugs/$story.md" --run-id "$run_id" "${agent[@]}" "$@" || status=$?
[ "$status" -eq 2 ] && exit 2  # bad input: corral said why
echo
"$corral" review "$run_id"
echo
echo "repository: $work/repo   run: $run_id"
[ "$status" -eq 0 ] && echo "next: corral approve $run_id && corral merge $run_id"
exit "$status"
