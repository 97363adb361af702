"""Correction of confusable characters (O/0, I/1, S/5, B/8, Z/2) driven by a field's format.

A character is changed only where the format demands a digit (and a look-alike letter was read) or a
letter (and a look-alike digit was read). Every change is reported, so the raw reading is kept
beside the corrected one. Pure functions, no I/O; the accuracy features reuse this module.

Format masks: `9` a digit, `A` a letter, `X` a letter or digit, `?` any character; anything else
must appear literally (compared case-insensitively).
"""

from __future__ import annotations

from dataclasses import dataclass

LETTER_TO_DIGIT = {"O": "0", "o": "0", "I": "1", "l": "1", "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2"}
DIGIT_TO_LETTER = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z"}


@dataclass(frozen=True)
class Correction:
    """The corrected value and a note per changed character."""

    value: str
    changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _slot_ok(ch: str, slot: str) -> bool:
    if slot == "9":
        return ch.isdigit()
    if slot == "A":
        return ch.isalpha()
    if slot == "X":
        return ch.isalnum()
    if slot == "?":
        return True
    return ch.lower() == slot.lower()


def matches_mask(value: str, mask: str) -> bool:
    return len(value) == len(mask) and all(_slot_ok(c, m) for c, m in zip(value, mask))


def correct_to_mask(value: str, mask: str) -> Correction | None:
    """Correct `value` so it fits `mask`, or None when it cannot fit (wrong length, or a character that
    is neither right nor a known look-alike)."""
    if len(value) != len(mask):
        return None
    out: list[str] = []
    changes: list[str] = []
    for pos, (ch, slot) in enumerate(zip(value, mask)):
        if _slot_ok(ch, slot):
            out.append(ch)
            continue
        if slot == "9" and ch in LETTER_TO_DIGIT:
            new = LETTER_TO_DIGIT[ch]
        elif slot == "A" and ch in DIGIT_TO_LETTER:
            new = DIGIT_TO_LETTER[ch]
        else:
            return None
        out.append(new)
        changes.append(f"{ch}->{new} at {pos + 1}")
    return Correction("".join(out), tuple(changes))


def correct_digits(value: str) -> Correction:
    """Every look-alike letter becomes its digit (for all-digit fields such as GTINs)."""
    fixed = correct_to_mask(value, "9" * len(value))
    return fixed if fixed is not None else Correction(value)
