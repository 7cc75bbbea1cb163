"""Images without a registry: CA bundle choice, mirror discovery, content hashes, the built image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from docker.errors import ImageNotFound
from typer.testing import CliRunner

import sandbox.images as images
import sandbox.images.offline_base as offline_base
import sandbox.images.pulled_base as pulled_base
from runner.cli.app import app
from sandbox.errors import ImageError
from sandbox.images import (
    BASE_IMAGE,
    BASE_PACKAGES,
    LABEL_BASE_FROM,
    LABEL_BASE_FROM_ID,
    LABEL_CONTENT_HASH,
    SANDBOX_IMAGE,
    base_hash,
    base_is_current,
    bootstrap_base,
    bootstrap_from,
    build_sandbox,
    ensure_sandbox_image,
    find_ca_bundle,
    host_mirror,
    image_digest,
    image_status,
    images_dir,
    pulled_base_hash,
    sandbox_hash,
)

DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def test_ca_bundle_prefers_the_variables_in_order(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.pem", "b.pem", "c.pem"))
    for p in (a, b, c):
        p.write_text("x")
    env = {"SSL_CERT_FILE": str(a), "PIP_CERT": str(b), "REQUESTS_CA_BUNDLE": str(c)}
    assert find_ca_bundle(env) == a
    assert find_ca_bundle({**env, "SSL_CERT_FILE": str(tmp_path / "gone")}) == b
    assert find_ca_bundle({"PIP_CERT": "", "REQUESTS_CA_BUNDLE": str(c)}) == c
    assert find_ca_bundle({}) == (DEBIAN_BUNDLE if DEBIAN_BUNDLE.is_file() else None)


def test_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: https://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# a comment: with a colon\nURIs: https://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
    )
    assert host_mirror(tmp_path) == "https://mirror.example/debian"
    other = tmp_path / "other"
    (other / "sources.list.d").mkdir(parents=True)
    (other / "sources.list.d" / "extra.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert host_mirror(other) == "http://old.example/debian"
    assert host_mirror(tmp_path / "empty") == "http://deb.debian.org/debian"


def test_base_hash_follows_suite_and_package_set_only() -> None:
    assert base_hash() == base_hash("bookworm", tuple(reversed(BASE_PACKAGES)))
    assert base_hash("bookworm", (*BASE_PACKAGES, "git")) == base_hash()  # a set
    assert base_hash("bookworm", (*BASE_PACKAGES, "curl")) != base_hash()
    assert base_hash("trixie") != base_hash()


def test_sandbox_hash_follows_the_dockerfile_and_the_base(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(images_dir() / "sandbox", ctx)
    first = sandbox_hash("sha256:base", ctx)
    assert sandbox_hash("sha256:base", ctx) == first
    assert sandbox_hash("sha256:other", ctx) != first
    with (ctx / "Dockerfile").open("a") as f:
        f.write("# changed\n")
    assert sandbox_hash("sha256:base", ctx) != first


def test_bootstrap_without_debootstrap_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    # force: the engine is not asked; as root the missing tool is reported, else the root need
    with pytest.raises(ImageError, match=r"apt-get install debootstrap|needs root"):
        bootstrap_base(cast(Any, None), force=True)


def test_an_unreachable_mirror_fails_with_the_fix_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"check the mirror|needs root"):
        bootstrap_base(
            cast(Any, None), mirror="http://127.0.0.1:9/debian", force=True, workdir=tmp_path
        )
    assert [p.name for p in tmp_path.iterdir()] in ([], ["corral-images.lock"])


def test_cli_rejects_a_bad_ca_bundle(tmp_path: Path) -> None:
    runner = CliRunner()
    gone = runner.invoke(app, ["image", "build", "--ca-bundle", str(tmp_path / "gone.pem")])
    assert gone.exit_code == 2 and "is not a file" in gone.output
    (tmp_path / "ca.pem").write_text("x")
    both = runner.invoke(
        app, ["image", "bootstrap", "--ca-bundle", str(tmp_path / "ca.pem"), "--no-ca-bundle"]
    )
    assert both.exit_code == 2 and "not both" in both.output


@pytest.mark.docker
def test_a_second_ensure_does_no_work(
    docker_client: Any, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def tripwire(*args: object) -> None:
        raise AssertionError("debootstrap ran although the base is current")

    monkeypatch.setattr(offline_base, "_debootstrap", tripwire)
    assert ensure_sandbox_image(docker_client) == sandbox_image
    base = bootstrap_base(docker_client)
    again = build_sandbox(docker_client, ca_bundle=None)
    assert not base.built and not again.built
    assert again.image_id == sandbox_image == image_digest(docker_client, SANDBOX_IMAGE)
    assert base.image_id == image_digest(docker_client, BASE_IMAGE)
    assert all(s.present and s.up_to_date for s in image_status(docker_client))


@pytest.mark.docker
def test_cli_build_twice_says_up_to_date(docker_client: Any, sandbox_image: str) -> None:
    result = CliRunner().invoke(app, ["image", "build"])
    assert result.exit_code == 0, result.output
    assert SANDBOX_IMAGE in result.output and "up to date (no work)" in result.output


@pytest.mark.docker
def test_image_digest_of_a_missing_image_names_the_fix(docker_client: Any) -> None:
    with pytest.raises(ImageError, match="corral image build"):
        image_digest(docker_client, "corral/no-such-image:never")


@pytest.mark.docker
def test_the_sandbox_image_runs_non_root_with_its_tools(
    docker_client: Any, sandbox_image: str
) -> None:
    script = (
        "id -u; id -g; echo $HOME; pwd; stat -c %u:%g /workspace;"
        " bash --version | head -1; git --version; timeout --version | head -1;"
        " timeout 1 sleep 5; echo timeout-exit=$?;"
        " python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version && echo venv-ok;"
        " python3 -m pytest --version; tini --version; git config --system safe.directory"
    )
    out = docker_client.containers.run(
        sandbox_image, ["bash", "-c", script], remove=True, network_mode="none"
    ).decode()
    lines = out.splitlines()
    assert lines[:5] == ["65532", "65532", "/home/sandbox", "/workspace", "65532:65532"]
    for needle in ("GNU bash", "git version", "timeout (GNU coreutils)", "timeout-exit=124",
                   "venv-ok", "pytest", "tini version", "/workspace"):  # fmt: skip
        assert needle in out, (needle, out)


@pytest.mark.docker
def test_the_sandbox_image_holds_no_host_ca_bundle_and_no_secrets(
    docker_client: Any, sandbox_image: str
) -> None:
    config = docker_client.images.get(sandbox_image).attrs["Config"]
    assert config["User"] == "65532:65532" and config["WorkingDir"] == "/workspace"
    assert LABEL_CONTENT_HASH in config["Labels"]
    env_names = {e.split("=", 1)[0] for e in config["Env"]}
    assert env_names == {
        "HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_INPUT",
    }  # fmt: skip
    # The image's bundle is exactly what its own ca-certificates package makes (no host certs
    # appended), and no file anywhere else has the host bundle's bytes.
    host = find_ca_bundle(os.environ)
    size = host.stat().st_size if host is not None else 1
    script = (
        "cp /etc/ssl/certs/ca-certificates.crt /tmp/before"
        " && update-ca-certificates --fresh >/dev/null 2>&1"
        " && cmp /tmp/before /etc/ssl/certs/ca-certificates.crt && echo bundle-from-package;"
        " echo local=$(ls -A /usr/local/share/ca-certificates | wc -l);"
        f" find / -xdev -type f -size {size}c ! -path /etc/ssl/certs/ca-certificates.crt"
        " ! -path /tmp/before -exec sha256sum {} +"
    )
    out = docker_client.containers.run(
        sandbox_image, ["bash", "-c", script], user="0", remove=True, network_mode="none"
    ).decode()
    assert "bundle-from-package" in out and "local=0" in out, out
    if host is not None:
        assert hashlib.sha256(host.read_bytes()).hexdigest() not in out


# --- the pulled base: `corral image bootstrap --from REF` ---------------------------------------

FROM_LOCAL = "corral-test/from:local"  # a test-only name for the real base, untagged afterwards
FROM_TARGET = "corral-test/base:from"  # where the test base goes: never the real BASE_IMAGE
TEST_SANDBOX = "corral-test/sandbox:from"
#: A registry on a closed loopback port: the engine's pull fails at once, and reaches nothing else.
UNPULLABLE = "127.0.0.1:9/corral-test/absent:none"


def test_pulled_base_hash_follows_the_source_image_packages_and_dockerfile(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(images_dir() / "base", ctx)
    first = pulled_base_hash("sha256:one", BASE_PACKAGES, ctx)
    assert pulled_base_hash("sha256:one", tuple(reversed(BASE_PACKAGES)), ctx) == first
    assert pulled_base_hash("sha256:two", BASE_PACKAGES, ctx) != first  # REF moved: rebuild
    assert pulled_base_hash("sha256:one", (*BASE_PACKAGES, "curl"), ctx) != first
    assert pulled_base_hash("sha256:one", BASE_PACKAGES) == first  # images/base by default
    with (ctx / "Dockerfile").open("a") as f:
        f.write("# changed\n")
    assert pulled_base_hash("sha256:one", BASE_PACKAGES, ctx) != first
    assert first != base_hash()


def test_a_base_is_current_made_either_way() -> None:
    pulled = {LABEL_CONTENT_HASH: pulled_base_hash("sha256:one"), LABEL_BASE_FROM_ID: "sha256:one"}
    assert base_is_current({LABEL_CONTENT_HASH: base_hash()})
    assert base_is_current(pulled)
    assert not base_is_current({**pulled, LABEL_BASE_FROM_ID: "sha256:two"})
    assert not base_is_current(pulled, packages=(*BASE_PACKAGES, "curl"))
    assert not base_is_current({LABEL_CONTENT_HASH: "stale"})
    assert not base_is_current(None)


def test_cli_from_and_mirror_are_exclusive() -> None:
    result = CliRunner().invoke(
        app, ["image", "bootstrap", "--from", FROM_LOCAL, "--mirror", "http://127.0.0.1:9/debian"]
    )
    assert result.exit_code == 2 and "not both" in result.output, result.output


@pytest.fixture
def local_source(docker_client: Any, sandbox_image: str) -> Iterator[str]:
    """The real base under a test-only name; that name and the test's target tag are removed
    afterwards (the real base and sandbox image are never retagged or removed)."""

    def untag() -> None:
        for ref in (TEST_SANDBOX, FROM_TARGET, FROM_LOCAL):
            with contextlib.suppress(ImageNotFound):
                docker_client.images.remove(ref)

    untag()  # left by an interrupted run
    docker_client.images.get(BASE_IMAGE).tag(FROM_LOCAL)
    yield FROM_LOCAL
    untag()
    assert docker_client.images.get(BASE_IMAGE) and docker_client.images.get(SANDBOX_IMAGE)


@pytest.mark.docker
def test_bootstrap_from_a_local_image_installs_the_packages_once(
    docker_client: Any, local_source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_base = docker_client.images.get(BASE_IMAGE).id
    source_id = docker_client.images.get(local_source).id
    made = bootstrap_from(docker_client, local_source, tag=FROM_TARGET, workdir=tmp_path)
    assert made.built and made.name == FROM_TARGET
    image = docker_client.images.get(FROM_TARGET)
    assert image.id == made.image_id and image.id != source_id
    labels = image.labels
    assert labels[LABEL_CONTENT_HASH] == made.content_hash == pulled_base_hash(source_id)
    assert labels[LABEL_BASE_FROM] == local_source and labels[LABEL_BASE_FROM_ID] == source_id
    assert base_is_current(labels)
    config = image.attrs["Config"]
    assert config["Cmd"] == ["/bin/bash"] and "LANG=C.UTF-8" in config["Env"]
    assert len(image.attrs["RootFS"]["Layers"]) == 1  # flattened: the install stage is not in it
    script = (
        f"dpkg-query -W -f '${{Package}} ${{Status}}\\n' {' '.join(BASE_PACKAGES)};"
        " test -e /tmp/corral-ca.pem && echo bundle-left || echo no-bundle;"
        " ls /var/lib/apt/lists | grep -vx -e lock -e partial | wc -l"
    )
    out = docker_client.containers.run(
        image.id, ["bash", "-c", script], remove=True, network_mode="none"
    ).decode()
    installed = {line.split()[0] for line in out.splitlines() if "install ok installed" in line}
    assert installed == set(BASE_PACKAGES), out
    assert out.splitlines()[-2:] == ["no-bundle", "0"], out
    # the sandbox image's own build (network none, what `corral image build` runs) works on it
    context = images_dir() / "sandbox"
    built = images.build_image(
        docker_client, context, TEST_SANDBOX, {"BASE": image.id},
        sandbox_hash(image.id, context),
    )  # fmt: skip
    assert built.attrs["Config"]["User"] == "65532:65532"

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("a build or pull ran although the base is current")

    monkeypatch.setattr(pulled_base, "build_image", tripwire)
    monkeypatch.setattr(pulled_base, "_pull", tripwire)
    again = bootstrap_from(docker_client, local_source, tag=FROM_TARGET, workdir=tmp_path)
    assert not again.built and again.image_id == made.image_id
    assert list(tmp_path.iterdir()) == []  # the build context is gone
    assert docker_client.images.get(BASE_IMAGE).id == real_base


@pytest.mark.docker
def test_from_an_image_that_cannot_be_pulled_is_one_line_and_exit_2(
    docker_client: Any, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulled_base, "PULL_TIMEOUT_S", 120.0)  # a bound, should the engine hang
    real_base = docker_client.images.get(BASE_IMAGE).id
    result = CliRunner().invoke(app, ["image", "bootstrap", "--from", UNPULLABLE])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert f"cannot pull {UNPULLABLE}" in errors[0]
    assert "`corral image bootstrap` without --from builds the base offline" in errors[0]
    assert docker_client.images.list(name=UNPULLABLE.rsplit(":", 1)[0]) == []
    assert docker_client.images.get(BASE_IMAGE).id == real_base


@pytest.mark.docker
def test_from_a_malformed_ref_names_the_form(docker_client: Any) -> None:
    for bad in ("Bad Ref", "UPPER:case"):
        result = CliRunner().invoke(app, ["image", "bootstrap", "--from", bad])
        assert result.exit_code == 2 and "is not an image reference" in result.output, result.output
