"""``corral image``: bootstrap the base image offline and build the sandbox image (both idempotent)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from runner.cli import handles_errors, out
from sandbox.images import ImageResult

image_app = typer.Typer(help="Build corral's images without a registry.", no_args_is_help=True)


def _bundle(ca_bundle: Path | None, no_ca_bundle: bool) -> Path | None:
    from sandbox.images import find_ca_bundle

    if no_ca_bundle:
        return None
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise ValueError(f"--ca-bundle {ca_bundle} is not a file")
        return ca_bundle
    return find_ca_bundle(os.environ)


def _show(r: ImageResult) -> None:
    done = f"built in {r.seconds:.1f}s" if r.built else "up to date (no work)"
    out.print(f"{r.name} {r.image_id[:19]} {done}")


@image_app.command()
@handles_errors
def bootstrap(
    force: bool = typer.Option(False, "--force", help="Rebuild even if current."),
    mirror: str | None = typer.Option(
        None, "--mirror", help="Debian mirror (default: the host's)."
    ),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help="CA bundle for the mirror."),
    no_ca_bundle: bool = typer.Option(False, "--no-ca-bundle", help="Pass no CA bundle."),
) -> None:
    """Make the Debian base image with debootstrap + docker import (no registry needed)."""
    from sandbox.engine import connect
    from sandbox.images import bootstrap_base

    client = connect()
    _show(
        bootstrap_base(
            client, mirror=mirror, ca_bundle=_bundle(ca_bundle, no_ca_bundle), force=force
        )
    )


@image_app.command()
@handles_errors
def build(
    force: bool = typer.Option(False, "--force", help="Rebuild even if current."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help="CA bundle for downloads."),
    no_ca_bundle: bool = typer.Option(False, "--no-ca-bundle", help="Pass no CA bundle."),
) -> None:
    """Build the sandbox image on the base (bootstrapping the base first if needed)."""
    from sandbox.engine import connect
    from sandbox.images import build_sandbox

    client = connect()
    _show(build_sandbox(client, force=force, ca_bundle=_bundle(ca_bundle, no_ca_bundle)))
