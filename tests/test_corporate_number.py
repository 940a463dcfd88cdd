from __future__ import annotations

import pytest

from saas.tenants import corporate_number

# Published numbers: National Tax Agency, Toyota Motor.
KNOWN = ["7000012050002", "1180301018771"]


@pytest.mark.parametrize("number", KNOWN)
def test_published_numbers_are_valid(number: str) -> None:
    assert corporate_number.is_valid(number)


@pytest.mark.parametrize("number", KNOWN)
def test_any_other_check_digit_is_invalid(number: str) -> None:
    for digit in "0123456789":
        if digit != number[0]:
            assert not corporate_number.is_valid(digit + number[1:])


@pytest.mark.parametrize("number", KNOWN)
def test_a_changed_base_digit_is_caught(number: str) -> None:
    changed = number[:5] + str((int(number[5]) + 1) % 10) + number[6:]
    assert not corporate_number.is_valid(changed)


@pytest.mark.parametrize("value", ["", "700001205000", "70000120500021", "700001205000a",
                                   "７０００１２０５０００２"])
def test_wrong_shapes_are_invalid(value: str) -> None:
    assert not corporate_number.is_valid(value)


def test_normalise_folds_full_width_digits_and_separators() -> None:
    assert corporate_number.normalise("７０００-０１２０-５０００２") == "7000012050002"
    assert corporate_number.normalise("7 0000 1205 0002") == "7000012050002"


def test_check_digit_needs_a_twelve_digit_base() -> None:
    with pytest.raises(ValueError):
        corporate_number.check_digit("123")
