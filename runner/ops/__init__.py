"""Operating corral: starting and resuming runs, proposing a policy, looking after the machine.

    service      ``start_run`` / ``resume_run``: from a request (or the store) to a driven ``Runner``
    request      ``RunRequest``, the bug report as a ``Task``, the repository's policy layer
    environment  the backend, the sandbox image and the ``[setup]`` environment image of a run
    maintenance  ``gc`` (what no live process owns) and ``smoke`` (a hardened sandbox, checked)
    doctor       the machine's checks and ``--fix``
    init         ``propose``: a ``.corral.toml`` for a repository, from its committed revision
    detect       what kind of project a tree is (Node, make; ``detect_python`` for Python)

Nothing is re-exported: each command imports the one module it needs (``service``
pulls in every agent and the engine).
"""
