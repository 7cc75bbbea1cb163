"""Command latency and sandbox lifecycle: corral's paths against Docker's own, in one run.

Prints medians and ratios (never absolute thresholds):

* per-command latency of a trivial command (``/bin/true``) through corral's
  persistent shell, vs the SDK's one-shot ``exec_run``, vs the ``docker exec``
  CLI (target: corral >= 15x faster than the CLI path);
* start-to-first-command: ``DockerBackend.start`` + first ``exec`` vs
  ``docker run -d`` + ``docker exec`` (CLI);
* teardown: ``Sandbox.close()`` vs ``docker rm -f``.

The paths are sampled side by side (round-robin, lifecycles alternated), so a machine
shared with other work slows all of them alike; the ratios are what to read.

Usage: ``.venv/bin/python bench/bench_exec.py [--n 200] [--lifecycles 10] [--image IMG]``.
Exit code 1 when the latency target is missed, so CI can run it as a check.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect
from sandbox.spec import SandboxSpec

TARGET_CLI_RATIO = 15.0


def _interleaved(paths: dict[str, tuple[Callable[[], object], int]], n: int) -> dict[str, float]:
    """Median seconds per path. Round ``i`` times every path whose ``every`` divides ``i``, so
    all paths are sampled side by side under the same machine load (others share the cores)."""
    for fn, _ in paths.values():
        for _ in range(3):  # warm-up
            fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(n):
        for name, (fn, every) in paths.items():
            if i % every == 0:
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    return {name: statistics.median(xs) for name, xs in samples.items()}


def _cli(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="commands per path")
    ap.add_argument("--lifecycles", type=int, default=10, help="start/teardown samples")
    ap.add_argument("--image", help="image to use (default: the sandbox image, built if needed)")
    ap.add_argument("--runtime", default="runc", choices=["runc", "runsc"])
    args = ap.parse_args()
    if args.n < 4 or args.lifecycles < 1:
        ap.error("use --n >= 4 and --lifecycles >= 1")

    client = connect()
    if args.image:
        image = args.image
    else:
        from sandbox.images import ensure_sandbox_image

        image = ensure_sandbox_image(client)
    backend = DockerBackend(client)
    spec = SandboxSpec(image=image, runtime=args.runtime, run_id="bench")

    with backend.start(spec) as sb:
        cid = sb.id

        def corral_exec() -> None:
            assert sb.exec("/bin/true").exit_code == 0

        def sdk_exec() -> None:
            assert client.containers.get(cid).exec_run(["/bin/true"]).exit_code == 0

        api = client.api

        def sdk_exec_lean() -> None:
            ex = api.exec_create(cid, ["/bin/true"])
            api.exec_start(ex["Id"])

        def cli_exec() -> None:
            subprocess.run(["docker", "exec", cid, "/bin/true"], check=True)

        slow = 4  # the one-shot paths are sampled every fourth round: n/4 samples each
        medians = _interleaved(
            {"corral": (corral_exec, 1), "sdk": (sdk_exec, slow), "lean": (sdk_exec_lean, slow),
             "cli": (cli_exec, slow)},
            args.n,
        )  # fmt: skip
        corral, sdk, lean, cli = (medians[k] for k in ("corral", "sdk", "lean", "cli"))

    def corral_lifecycle() -> tuple[float, float]:
        t = time.perf_counter()
        s = backend.start(spec)
        s.exec("/bin/true")
        started = time.perf_counter() - t
        t = time.perf_counter()
        s.close()
        return started, time.perf_counter() - t

    def docker_lifecycle() -> tuple[float, float]:
        t = time.perf_counter()
        cid = _cli(
            "run",
            "-d",
            "--init",
            "--network",
            "none",
            "--runtime",
            args.runtime,
            image,
            "sleep",
            "infinity",
        ).strip()
        _cli("exec", cid, "/bin/true")
        started = time.perf_counter() - t
        t = time.perf_counter()
        _cli("rm", "-f", cid)
        return started, time.perf_counter() - t

    ours, theirs = [], []
    for _ in range(args.lifecycles):  # alternated, so both see the same load
        ours.append(corral_lifecycle())
        theirs.append(docker_lifecycle())
    c_start = statistics.median(s for s, _ in ours)
    c_stop = statistics.median(s for _, s in ours)
    d_start = statistics.median(s for s, _ in theirs)
    d_stop = statistics.median(s for _, s in theirs)

    ratio = cli / corral
    print(f"runtime: {args.runtime}   image: {image[:19]}   n={args.n}")
    print("per-command latency (median, /bin/true)")
    print(f"  corral persistent shell   {corral * 1e3:8.2f} ms")
    print(
        f"  SDK exec_run              {sdk * 1e3:8.2f} ms   corral is {sdk / corral:5.1f}x faster"
    )
    print(
        f"  SDK exec_create+start     {lean * 1e3:8.2f} ms   corral is {lean / corral:5.1f}x faster"
    )
    print(
        f"  docker exec CLI           {cli * 1e3:8.2f} ms   corral is {ratio:5.1f}x faster"
        f"   (target >= {TARGET_CLI_RATIO:.0f}x)"
    )
    print("sandbox lifecycle (median)")
    print(
        f"  start + first command: corral {c_start * 1e3:7.1f} ms   docker run -d + exec "
        f"{d_start * 1e3:7.1f} ms   ratio {c_start / d_start:4.2f}"
    )
    print(
        f"  teardown:              corral {c_stop * 1e3:7.1f} ms   docker rm -f        "
        f"{d_stop * 1e3:7.1f} ms   ratio {c_stop / d_stop:4.2f}"
    )
    ok = ratio >= TARGET_CLI_RATIO
    print(f"result: {'PASS' if ok else 'MISS'} corral vs docker exec CLI = {ratio:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
