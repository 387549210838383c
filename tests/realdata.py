"""Where the tests find the real model and the shared data sets: two environment variables.

``KOSEARCH_TEST_MODEL`` names a real model directory (multilingual-e5-small) and
``KOSEARCH_TEST_DATA`` the folder of shared data sets (``korquad_v1_retrieval_dev``,
``korsts_dev``, ``ko_open_docs``, ...); ``.ci/run`` sets both. A test that needs one that is not
set (or not there) is skipped with a message naming both, never silently.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_ENV = "KOSEARCH_TEST_MODEL"
DATA_ENV = "KOSEARCH_TEST_DATA"
HOW = (f"set {MODEL_ENV} to a model directory (multilingual-e5-small) and {DATA_ENV} to the "
       "shared data folder; .ci/run sets both")
_UNSET = Path("/nonexistent/kosearch-test-data")


def _directory(variable: str) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else _UNSET


def model_path(*parts: str) -> Path:
    """A path inside the ``KOSEARCH_TEST_MODEL`` directory (missing when the variable is unset)."""
    return _directory(MODEL_ENV).joinpath(*parts)


def data_path(*parts: str) -> Path:
    """A path inside the ``KOSEARCH_TEST_DATA`` folder (missing when the variable is unset)."""
    return _directory(DATA_ENV).joinpath(*parts)


def missing(path: Path) -> str:
    """The skip message for a test that needs ``path``."""
    return f"{path} is not there: {HOW}"
