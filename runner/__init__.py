"""corral's control loop and everything user-facing, one sub-package per concern.

Dependencies point one way (``sandbox`` <- ``policies`` <- ``runner``), and inside
``runner`` from the records up to the command line:

    store     the run store: SQLite records, the hash-chained event log, trajectories
    loop      one run: attempts, windows, the agent's validated tools, gates, judging, resume
    llm       the model client (any OpenAI-compatible endpoint) and a scripted model server
    agents    the agents the loop drives: built-in, agent CLIs (presets, images), scripted
    gateway   the host-side model gateway an agent CLI in the sandbox talks to
    ops       starting and resuming runs (``service``), gc, smoke, doctor
    review    what a reviewer reads (evidence, live display, HTML report) and merge
    cli       the ``corral`` command
"""
