"""Order lines: ``name,quantity,unit_price`` as exported by the shop's spreadsheet."""

from dataclasses import dataclass

from invoicer.money import to_cents


@dataclass(frozen=True)
class Line:
    """One order line; prices in cents."""

    name: str
    quantity: int
    unit_cents: int

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_cents


def parse_line(text: str) -> Line:
    """Parse one CSV record. ``ValueError`` names the problem."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3:
        raise ValueError(f"expected name,quantity,unit_price: {text!r}")
    name, quantity, price = fields
    if not quantity.isdigit():
        raise ValueError(f"quantity must be a whole number: {quantity!r}")
    return Line(name, int(quantity), to_cents(price))
