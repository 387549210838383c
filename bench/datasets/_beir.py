"""Helpers shared by the dataset build scripts: read a file from a fetched git snapshot, read an
.xlsx sheet with the standard library, and write a BEIR folder."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from collections.abc import Iterable, Mapping
from io import BytesIO
from pathlib import Path
from xml.etree import ElementTree

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def git_file(snapshot: Path, path: str, commit: str = "HEAD") -> bytes:
    """The bytes of ``path`` at ``commit`` in a snapshot (a bare git directory or a checkout)."""
    git_dir = snapshot / ".git" if (snapshot / ".git").is_dir() else snapshot
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def git_ls(snapshot: Path, folder: str, commit: str = "HEAD") -> list[str]:
    git_dir = snapshot / ".git" if (snapshot / ".git").is_dir() else snapshot
    out = subprocess.run(["git", "--git-dir", str(git_dir), "-c", "core.quotepath=off", "ls-tree",
                          "--name-only", f"{commit}:{folder}"], check=True, capture_output=True)
    return [line for line in out.stdout.decode().splitlines() if line]


def xlsx_rows(data: bytes) -> list[dict[str, str]]:
    """The first sheet of an .xlsx file as dicts keyed by the header row."""
    book = zipfile.ZipFile(BytesIO(data))
    strings = [
        "".join(t.text or "" for t in si.iter(f"{_NS}t"))
        for si in ElementTree.fromstring(book.read("xl/sharedStrings.xml")).findall(f"{_NS}si")
    ]
    sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows: list[dict[str, str]] = []
    for row in sheet.iter(f"{_NS}row"):
        cells: dict[str, str] = {}
        for cell in row.findall(f"{_NS}c"):
            value = cell.find(f"{_NS}v")
            if value is None or value.text is None:
                continue
            column = re.match(r"[A-Z]+", cell.get("r", "")).group()  # type: ignore[union-attr]
            cells[column] = strings[int(value.text)] if cell.get("t") == "s" else value.text
        rows.append(cells)
    header, *body = rows
    return [{header[c]: r.get(c, "") for c in header} for r in body]


def write_beir(out: Path, corpus: Iterable[Mapping[str, str]], queries: Iterable[Mapping[str, str]],
               qrels: Iterable[tuple[str, str]]) -> None:
    """``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` under ``out``."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for name, records in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(out / name, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(dict(record), ensure_ascii=False) + "\n")
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, did in qrels:
            f.write(f"{qid}\t{did}\t1\n")
