from datetime import date

from invoicer.terms import due_date


def test_due_on_a_weekday() -> None:
    assert due_date(date(2024, 3, 4), 10) == date(2024, 3, 14)
    assert due_date(date(2024, 3, 1), 7) == date(2024, 3, 8)  # a Friday stays


def test_due_on_sunday_moves_to_monday() -> None:
    assert due_date(date(2024, 3, 7), 3) == date(2024, 3, 11)


def test_due_on_saturday_moves_to_monday() -> None:
    assert due_date(date(2024, 3, 7), 2) == date(2024, 3, 11)
