"""``[sandbox] packages``: Debian package names only, and the node/make presets that use them."""

from __future__ import annotations

import pytest

from policies.load import PolicyError, load_policy
from policies.policy import Policy
from sandbox.images.packages import packages_hash


@pytest.mark.parametrize("name", ["nodejs", "g++", "libssl3", "python3.11-venv"])
def test_debian_package_names_load(name: str) -> None:
    assert Policy.model_validate({"sandbox": {"packages": [name]}}).sandbox.packages == (name,)


@pytest.mark.parametrize("name", ["make; rm -rf /", "-y", "Node", "a", "x y", "$(id)"])
def test_anything_else_is_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="not a Debian package name"):
        Policy.model_validate({"sandbox": {"packages": [name]}})


def test_the_node_and_make_presets_add_their_packages_and_gates() -> None:
    node = load_policy("node").policy
    assert node.sandbox.packages == ("nodejs", "npm") and [g.command for g in node.gates] == [
        "npm test"
    ]
    assert "npm ci" in node.setup.commands[0]
    make = load_policy("make").policy
    assert make.sandbox.packages == ("make",) and [g.command for g in make.gates] == ["make test"]
    with pytest.raises(PolicyError, match="node, make"):
        load_policy("nope")


def test_the_image_hash_covers_base_packages_and_recipe() -> None:
    one = packages_hash("sha256:a", ["npm", "nodejs"], b"FROM x")
    assert one == packages_hash("sha256:a", ["nodejs", "npm", "npm"], b"FROM x")  # a set
    assert one != packages_hash("sha256:b", ["nodejs", "npm"], b"FROM x")
    assert one != packages_hash("sha256:a", ["nodejs"], b"FROM x")
    assert one != packages_hash("sha256:a", ["nodejs", "npm"], b"FROM y")
