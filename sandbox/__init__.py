"""Isolation for corral: git workspaces, hardened containers, images. Knows nothing of policies
or agents; read ``interfaces`` first (the small protocols and result types everything matches).

- contracts: ``interfaces``, ``spec`` (every isolation setting), ``errors`` (the exception tree)
- workspaces: ``workspace`` (the interface), ``gitdir``, ``git`` (hardened host git), ``changes``
- reading an agent's tree: ``scan``, ``nofollow``, ``blobs``, ``watch``, ``harvest``
- trees and state on the host: ``gatetree``, ``treefs``, ``paths``, ``lease``, ``gc``
- containers: ``engine``, ``container``, ``docker_backend``, ``shell``, ``output``, ``recording``,
  ``forwarder`` (runs inside the sandbox)
- images: the ``images`` sub-package (base, sandbox and environment images)
- for tests and new backends: ``fake`` (``FakeSandbox``), ``conformance`` (the shared checks)
"""
