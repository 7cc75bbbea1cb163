import pytest
from invoicer.invoice import Invoice, apply_discount
from invoicer.lines import Line


def test_no_discount() -> None:
    assert apply_discount(20000, 0) == 20000


def test_ten_percent_discount() -> None:
    assert apply_discount(20000, 10) == 18000


def test_discount_out_of_range() -> None:
    with pytest.raises(ValueError):
        apply_discount(100, 120)


def test_invoice_totals() -> None:
    inv = Invoice("ACME")
    inv.add(Line("Washers", 100, 5))
    inv.add(Line("Bolts", 4, 25))
    assert inv.subtotal_cents == 600
    assert inv.total_cents == 600
