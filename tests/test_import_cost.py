"""What importing each light entry point must not pull in (each case in a fresh interpreter).

``import kosearch``, ``kosearch --help``, the model registry, the integrations package and the
pure evaluation and BM25 modules are read by fast paths; torch, sentence-transformers, faiss,
Kiwi and the frameworks load only when a model, an index or a framework is really needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "import kosearch": (
        "import kosearch", ("torch", "sentence_transformers", "faiss", "kiwipiepy", "pyarrow")),
    "kosearch --help": (
        "from kosearch.cli import cli; cli(['--help'], standalone_mode=False)",
        ("torch", "sentence_transformers")),
    "the model registry": (
        "import kosearch.encoding.registry", ("torch", "sentence_transformers", "transformers")),
    "the integrations package": (
        "import kosearch.integrations", ("langchain_core", "llama_index", "faiss", "torch")),
    "evaluation metrics": (
        "import kosearch.eval.metrics",
        ("torch", "sentence_transformers", "scipy", "scipy.stats")),
    "the BM25 index": ("import kosearch.lexical.bm25", ("kiwipiepy", "bm25s")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_light_entry_points_import_nothing_heavy(case: str) -> None:
    statement, heavy = CASES[case]
    code = (f"import sys, json\n{statement}\n"
            f"print(json.dumps([m for m in {list(heavy)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], f"{case} imports them"
