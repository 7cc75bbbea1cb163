"""``corral image``: make the base image (offline, or ``--from`` a pulled image) and build the
sandbox image on it (all idempotent).

``runner.cli.app`` imports this module at its very end, after ``handles_errors`` and
``out`` exist, and mounts ``image_app`` as ``corral image``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runner.cli.app import handles_errors, out
from runner.errors import UsageError

if TYPE_CHECKING:
    from sandbox.images import ImageResult

image_app: typer.Typer = typer.Typer(
    help="Build corral's images without a registry.", no_args_is_help=True
)

_CA_HELP = "CA bundle for the Debian mirror (default: SSL_CERT_FILE, PIP_CERT, ... or Debian's)."


def _bundle(ca_bundle: Path | None, no_ca_bundle: bool) -> Path | None:
    from sandbox.images import find_ca_bundle

    if no_ca_bundle and ca_bundle is not None:
        raise UsageError("give either --ca-bundle or --no-ca-bundle, not both")
    if no_ca_bundle:
        return None
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise UsageError(f"--ca-bundle {ca_bundle} is not a file")
        return ca_bundle
    return find_ca_bundle(os.environ)


def _progress() -> None:
    """Show the library's progress lines: a bootstrap takes minutes."""
    logging.getLogger("sandbox.images").setLevel(logging.INFO)  # the package and its modules


def _show(r: ImageResult) -> None:
    done = f"built in {r.seconds:.1f}s" if r.built else "up to date (no work)"
    out.print(f"{r.name} {r.image_id[:19]}… {done}", highlight=False)


@image_app.command()
@handles_errors
def bootstrap(
    force: bool = typer.Option(False, "--force", help="Remake it even if current."),
    mirror: str | None = typer.Option(
        None, "--mirror", help="Debian mirror URL (default: the one the host's apt uses)."
    ),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help=_CA_HELP),
    no_ca_bundle: bool = typer.Option(False, "--no-ca-bundle", help="Give debootstrap no bundle."),
    from_ref: str | None = typer.Option(
        None,
        "--from",
        metavar="REF",
        help="Build the base FROM this Debian bookworm image (e.g. debian:bookworm-slim): the"
        " local one, else pulled; apt installs the packages (needs the mirror, gets the bundle).",
    ),
) -> None:
    """Make the Debian base image: debootstrap + docker import (root; no registry needed), or
    built --from a local or pulled image."""
    from sandbox.engine import connect
    from sandbox.images import bootstrap_base, bootstrap_from

    if from_ref is not None and mirror is not None:
        raise UsageError("give either --mirror (offline bootstrap) or --from REF, not both")
    bundle = _bundle(ca_bundle, no_ca_bundle)
    _progress()
    client = connect()
    try:
        if from_ref is None:
            _show(bootstrap_base(client, mirror=mirror, ca_bundle=bundle, force=force))
        else:
            _show(bootstrap_from(client, from_ref, ca_bundle=bundle, force=force))
    finally:
        client.close()


@image_app.command()
@handles_errors
def build(
    force: bool = typer.Option(False, "--force", help="Rebuild the sandbox image even if current."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help=_CA_HELP),
    no_ca_bundle: bool = typer.Option(False, "--no-ca-bundle", help="Give debootstrap no bundle."),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="Build the agent image of this agent CLI preset (aider, mini-swe-agent, claude-code,"
        " codex) on the sandbox image instead; pip/npm get the CA bundle.",
    ),
) -> None:
    """Build the sandbox image on the base (bootstrapping a missing base first), or an agent image."""
    from runner.agents import load_preset
    from runner.agents.image import build_agent_image
    from sandbox.engine import connect
    from sandbox.images import build_sandbox

    bundle = _bundle(ca_bundle, no_ca_bundle)
    preset = load_preset(agent.removeprefix("cli:")) if agent is not None else None
    _progress()
    client = connect()
    try:
        if preset is None:
            _show(build_sandbox(client, force=force, ca_bundle=bundle))
        else:
            _show(build_agent_image(client, preset, ca_bundle=bundle, force=force))
    finally:
        client.close()
