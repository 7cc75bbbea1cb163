"""What a reviewer reads, and what happens after they decide.

    evidence     ``gather``: a run's ``Review`` (diff, gates against the baseline, blocked actions)
    display      the live display of a run (panel, plain lines, JSON lines) and safe markup
    report_html  the self-contained HTML report
    merge        approve, reject, merge (one commit with trailers), export, PR body

Only ``evidence`` is re-exported: ``merge`` starts runs (``runner.ops.service``)
and is imported where it is used.
"""

from runner.review.evidence import Review, gather

__all__ = ["Review", "gather"]
