"""invoicer: order lines to invoices."""

from invoicer.invoice import Invoice, apply_discount
from invoicer.lines import Line, parse_line
from invoicer.money import format_cents, to_cents
from invoicer.terms import due_date

__all__ = [
    "Invoice",
    "Line",
    "apply_discount",
    "due_date",
    "format_cents",
    "parse_line",
    "to_cents",
]
