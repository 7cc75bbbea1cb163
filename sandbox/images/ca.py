"""The host's CA bundle, for whatever downloads while an image is made.

Behind a TLS-intercepting proxy every download needs the host's bundle:
debootstrap's ``wget`` gets it through a private ``WGETRC`` (``offline_base``,
only needed for an https mirror), the install stage of a pulled base and of an
agent image get it in their build context, and the environment set-up
containers get it mounted (``env_image``). No image contains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def find_ca_bundle(env: Mapping[str, str]) -> Path | None:
    """The host's CA bundle: ``SSL_CERT_FILE``, ``PIP_CERT``, ``REQUESTS_CA_BUNDLE``, else Debian's.

    The first variable naming an existing file wins; ``None`` when there is none at all.
    """
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return DEBIAN_BUNDLE if DEBIAN_BUNDLE.is_file() else None
