"""A fingerprint of the code that turns model outputs into text.

Model checks record it, so a change to pre/post-processing or to an engine re-runs the
accuracy checks of every model set instead of trusting results measured with older code.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
_PARTS = ("pipeline", "engines")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    h = hashlib.sha256()
    for part in _PARTS:
        for f in sorted((_PACKAGE / part).glob("*.py")):
            h.update(f"{part}/{f.name}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
