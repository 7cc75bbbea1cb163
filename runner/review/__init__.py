"""What a reviewer reads, and what happens after they decide.

    evidence     ``gather``: a run's ``Review`` (diff, gates against the baseline, blocked actions)
    diffview     the candidate patch per file and line (``parse_diff``)
    text         run text shown safely: hidden characters escaped, rich markup, one line
    display      how a run is shown while it works: the modes (live, lines, JSON, quiet)
    runview      what a run is doing now, folded from its events (``RunView``, ``describe``)
    live         the rich live panel drawn from a ``RunView``
    report_html  the self-contained HTML report
    merge        approve, reject, merge (one commit with trailers)
    candidate    the run's candidate patch and its approval, read from the store
    branch       the host-git steps that put a patch onto the user's branch
    writeup      the commit message, the mail-style patch (export), the PR body

Nothing is re-exported: each module is imported by its own name where it is used,
so a command that only needs ``text`` (every command's output) does not pay for
``evidence`` (policies, pydantic, the store) or ``merge`` (run results).
"""
