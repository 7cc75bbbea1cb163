"""One trial, in a process of its own: ``python -m runner.eval.worker`` with the request on stdin.

The pool (``runner.eval.pool``) starts one such process per trial, so each trial is a
normal corral run (``runner.ops.service.start_run``) with its own lease, sandbox,
record and signal handling, exactly as ``corral run --idempotency-key K`` would
make it: the same key and request again returns the finished run or resumes an
interrupted one. stdin holds ``{"home": ..., "request": RunRequest as JSON}``;
stdout gets one line, ``{"run_id", "status"}``; stderr the run's plain event lines
(the pool keeps them in the trial's log). Exit 0 when the run reached an outcome
(whatever it is), 2 for bad input (a ``UserError``: its ``error:`` line on
stderr), 1 for any other failure, 130 when interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runner.ops.request import RunRequest

_PATHS = ("repo", "bug", "script", "api_key_file", "hidden_tests")


def request_to_json(req: RunRequest) -> dict[str, Any]:
    """``req`` as JSON (paths as strings, tuples as lists)."""
    data = asdict(req)
    for name in _PATHS:
        data[name] = None if data[name] is None else str(data[name])
    data["must_pass"] = list(req.must_pass)
    data["overrides"] = dict(req.overrides or {})
    return data


def request_of(data: dict[str, Any]) -> RunRequest:
    """``request_to_json``'s inverse."""
    values = dict(data)
    for name in _PATHS:
        values[name] = None if values[name] is None else Path(values[name])
    values["must_pass"] = tuple(values["must_pass"])
    return RunRequest(**values)


def main() -> int:
    from runner.errors import RunInterrupted
    from runner.ops.service import start_run
    from sandbox.errors import CorralError, UserError

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    job = json.loads(sys.stdin.read())

    def show(kind: str, data: Any) -> None:
        print(f"[corral] {kind} {json.dumps(data, default=str)[:400]}", file=sys.stderr, flush=True)

    try:
        result = start_run(Path(job["home"]), request_of(job["request"]), on_event=show)
    except (RunInterrupted, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CorralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"run_id": result.run_id, "status": result.status}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
