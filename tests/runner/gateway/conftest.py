"""The gateway rig of test_gateway.py (a gateway and its forwarder on loopback), for every
test module here."""

from tests.runner.gateway.test_gateway import rig  # noqa: F401 (a fixture, found by name)
