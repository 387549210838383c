"""The version of kosearch (its own module, so nothing imports it back from the package face)."""
from __future__ import annotations

__version__ = "0.1.0"
