"""法人番号 (corporate number): 13 digits whose first digit checks the other twelve.

Check digit = 9 − (Σ Pn × Qn mod 9), where Pn is the n-th digit of the 12-digit base
counted from its last digit and Qn is 1 for odd n, 2 for even n (法人番号の指定等に関する
省令 第2条). Example: 7000012050002 (the National Tax Agency).
"""

from __future__ import annotations

import unicodedata


def check_digit(base: str) -> int:
    """The check digit of a 12-digit base number."""
    if len(base) != 12 or not base.isascii() or not base.isdigit():
        raise ValueError("the base of a corporate number is 12 digits")
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base), start=1))
    return 9 - total % 9


def normalise(value: str) -> str:
    """Full-width digits to ASCII, and the hyphens and spaces people type removed."""
    folded = unicodedata.normalize("NFKC", value)
    return "".join(ch for ch in folded if ch not in " -‐−ー")


def is_valid(value: str) -> bool:
    """True for 13 ASCII digits whose first digit is the check digit of the rest."""
    return (len(value) == 13 and value.isascii() and value.isdigit()
            and int(value[0]) == check_digit(value[1:]))
