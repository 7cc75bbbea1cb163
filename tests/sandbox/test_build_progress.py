"""An image build shows its progress as it goes: each ``Step N/M`` is logged when it starts, the
image is labelled with its recipe hash, and a failing step is one line naming the command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ImageError
from sandbox.images import build_image
from sandbox.images.recipe import LABEL_CONTENT_HASH

TAG = "corral-test/build-progress:latest"


@pytest.mark.docker
def test_each_step_is_logged_as_it_starts_and_the_image_is_labelled(
    docker_client: Any, sandbox_image: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {sandbox_image}\nRUN true\n")
    caplog.set_level(logging.INFO, logger="sandbox.images")
    try:
        image = build_image(docker_client, tmp_path, TAG, {}, "progress-probe")
        assert image.labels[LABEL_CONTENT_HASH] == "progress-probe"
        steps = [r.getMessage() for r in caplog.records if ": Step " in r.getMessage()]
        assert steps == [
            f"{TAG}: Step 1/3 : FROM {sandbox_image}",
            f"{TAG}: Step 2/3 : RUN true",
            f"{TAG}: Step 3/3 : LABEL {LABEL_CONTENT_HASH}=progress-probe",  # the engine's own
        ]
    finally:
        docker_client.images.remove(TAG, force=True)


@pytest.mark.docker
def test_a_failing_step_is_one_error_naming_the_command(
    docker_client: Any, sandbox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {sandbox_image}\nRUN exit 7\n")
    with pytest.raises(ImageError, match=r"building .* failed: .*'/bin/sh -c exit 7'.* code: 7"):
        build_image(docker_client, tmp_path, TAG, {}, "progress-probe")
