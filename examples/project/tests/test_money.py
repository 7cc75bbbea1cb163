import pytest
from invoicer.money import format_cents, to_cents


def test_to_cents_rounds_half_up() -> None:
    assert to_cents("0.125") == 13
    assert to_cents(" 12.5 ") == 1250


def test_to_cents_rejects_text() -> None:
    with pytest.raises(ValueError):
        to_cents("twelve")


def test_format_cents() -> None:
    assert format_cents(123456) == "1,234.56"
    assert format_cents(-5) == "-0.05"
