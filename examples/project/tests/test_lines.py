import pytest
from invoicer.lines import Line, parse_line


def test_parse_plain_line() -> None:
    assert parse_line("Washers,100,0.05") == Line("Washers", 100, 5)


def test_parse_quoted_name_with_comma() -> None:
    assert parse_line('"Bolts, M6",3,0.25') == Line("Bolts, M6", 3, 25)


def test_bad_quantity() -> None:
    with pytest.raises(ValueError, match="whole number"):
        parse_line("Nuts,two,0.10")
