"""Payment terms: when an invoice is due."""

from datetime import date, timedelta


def due_date(issued: date, net_days: int) -> date:
    """``issued`` plus ``net_days``; a due date on a weekend moves to the next Monday."""
    due = issued + timedelta(days=net_days)
    if due.weekday() == 5:  # Saturday
        return due - timedelta(days=1)
    if due.weekday() == 6:  # Sunday
        return due + timedelta(days=1)
    return due
