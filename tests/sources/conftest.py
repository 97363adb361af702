"""Every test here fails if it leaks threads (the fixture lives in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _no_leaked_threads(no_leaked_threads: None) -> None:
    return None
