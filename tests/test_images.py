"""Images without a registry: CA bundle choice, mirror discovery, content hashes, the built image."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.images import (
    SANDBOX_IMAGE,
    build_sandbox,
    find_ca_bundle,
    host_mirror,
    image_digest,
    image_status,
    images_dir,
    sandbox_hash,
)


def test_ca_bundle_prefers_the_variables_in_order(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.pem", "b.pem", "c.pem"))
    for p in (a, b, c):
        p.write_text("x")
    assert find_ca_bundle({"SSL_CERT_FILE": str(a), "PIP_CERT": str(b)}) == a
    assert find_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "gone"), "PIP_CERT": str(b)}) == b
    assert find_ca_bundle({"REQUESTS_CA_BUNDLE": str(c)}) == c
    debian = Path("/etc/ssl/certs/ca-certificates.crt")
    assert find_ca_bundle({}) == (debian if debian.is_file() else None)


def test_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: https://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: https://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert host_mirror(tmp_path) == "https://mirror.example/debian"
    other = tmp_path / "other"
    other.mkdir()
    (other / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert host_mirror(other) == "http://old.example/debian"
    assert host_mirror(tmp_path / "empty") == "http://deb.debian.org/debian"


def test_sandbox_hash_follows_the_dockerfile_and_the_base(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(images_dir() / "sandbox", ctx)
    first = sandbox_hash("sha256:base", ctx)
    assert sandbox_hash("sha256:base", ctx) == first
    assert sandbox_hash("sha256:other", ctx) != first
    with (ctx / "Dockerfile").open("a") as f:
        f.write("# changed\n")
    assert sandbox_hash("sha256:base", ctx) != first


@pytest.mark.docker
def test_second_build_does_no_work_and_status_is_current(
    docker_client: Any, sandbox_image: str
) -> None:
    again = build_sandbox(docker_client)
    assert not again.built and again.image_id == image_digest(docker_client, SANDBOX_IMAGE)
    assert all(s.present and s.up_to_date for s in image_status(docker_client))
    cli = subprocess.run(
        [sys.executable, "-m", "runner", "image", "build"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert cli.returncode == 0 and "up to date (no work)" in cli.stdout


@pytest.mark.docker
def test_the_sandbox_image_has_its_tools_a_non_root_user_and_no_secrets(
    docker_client: Any, sandbox_image: str
) -> None:
    script = (
        "id -u; id -g; echo $HOME; bash --version | head -1; git --version; timeout --version | head -1;"
        " python3 -m venv /tmp/v && echo venv-ok; python3 -m pytest --version; tini --version;"
        " env | sort; ls /etc/ssl/certs/corral* 2>&1 || true"
    )
    out = docker_client.containers.run(
        sandbox_image, ["bash", "-c", script], remove=True, network_mode="none"
    ).decode()
    lines = out.splitlines()
    assert lines[:3] == ["65532", "65532", "/home/sandbox"]
    for needle in (
        "GNU bash",
        "git version",
        "timeout (GNU coreutils)",
        "venv-ok",
        "pytest",
        "tini version",
    ):
        assert needle in out, needle
    assert "No such file" in out  # no CA bundle baked in
    env_names = {
        line.split("=", 1)[0] for line in lines if "=" in line and line.split("=", 1)[0].isupper()
    }
    assert not {n for n in env_names if any(k in n for k in ("KEY", "TOKEN", "SECRET", "PASSWORD"))}
