"""Invoices: lines, a discount and the totals printed on the PDF."""

from dataclasses import dataclass, field

from invoicer.lines import Line


def apply_discount(amount_cents: int, percent: int) -> int:
    """``amount_cents`` less ``percent`` per cent, rounded down to the cent (0 <= percent <= 100)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount must be between 0 and 100 per cent: {percent}")
    return amount_cents - amount_cents * percent // 10


@dataclass
class Invoice:
    """An invoice under construction."""

    customer: str
    lines: list[Line] = field(default_factory=list)
    discount_percent: int = 0

    def add(self, line: Line) -> None:
        self.lines.append(line)

    @property
    def subtotal_cents(self) -> int:
        return sum(line.total_cents for line in self.lines)

    @property
    def total_cents(self) -> int:
        return apply_discount(self.subtotal_cents, self.discount_percent)
