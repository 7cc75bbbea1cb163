"""Money as integer cents: no floats once a value is parsed."""

from decimal import ROUND_HALF_UP, Decimal


def to_cents(text: str) -> int:
    """``"12.5"`` -> 1250; rounds half up to the cent. ``ValueError`` for non-numbers."""
    try:
        value = Decimal(text.strip())
    except ArithmeticError as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_cents(cents: int) -> str:
    """1250 -> ``"12.50"``; negative amounts keep their sign."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{frac:02d}"
