"""Tests for kosearch.ingest.corpus: formats, field mapping, error locations, streaming, digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from realdata import data_path, missing

from kosearch.errors import CorpusError
from kosearch.ingest.corpus import CorpusReader
from kosearch.ingest.formats import detect_format
from kosearch.settings import Fields
from kosearch.types import Document

KORQUAD = data_path("korquad_v1_retrieval_dev", "corpus.jsonl")

RECORDS: list[dict[str, Any]] = [
    {"id": 1, "title": "서울", "text": "서울은 대한민국의 수도이다.", "source": "위키", "tags": ["도시"]},
    {"id": "d2", "title": "부산", "text": "부산은 항구 도시이다.\n해운대가 유명하다.", "n": 3},
    {"id": "d3", "text": "제목이 없는 문서입니다.", "meta": {"중첩": True}},
]


def jsonl_bytes(records: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read_error(source: Any, **kwargs: Any) -> str:
    with pytest.raises(CorpusError) as info:
        list(CorpusReader(source, **kwargs))
    message = str(info.value)
    assert "\n" not in message
    return message


def check_records(docs: list[Document]) -> None:
    assert [d.id for d in docs] == ["1", "d2", "d3"]
    assert docs[0] == Document(
        id="1",
        text="서울은 대한민국의 수도이다.",
        title="서울",
        meta={"source": "위키", "tags": ["도시"]},
    )
    assert docs[1].text == "부산은 항구 도시이다.\n해운대가 유명하다."
    assert docs[1].meta == {"n": 3}
    assert docs[2].title == ""
    assert docs[2].meta == {"meta": {"중첩": True}}


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c.jsonl", "c.ndjson", "C.JSONL"])
def test_jsonl_round_trip(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, jsonl_bytes(RECORDS))
    reader = CorpusReader(path)
    check_records(list(reader))
    assert (reader.documents, reader.skipped_empty) == (3, 0)


def test_jsonl_skips_blank_lines_and_accepts_bom(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + jsonl_bytes(RECORDS[:1]) + b"\n   \r\n" + jsonl_bytes(RECORDS[1:])
    check_records(list(CorpusReader(write(tmp_path / "c.jsonl", data))))


@pytest.mark.parametrize("name", ["c.jsonl.gz", "c.ndjson.gz"])
def test_gzip_round_trip_and_digest_of_compressed_bytes(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, gzip.compress(jsonl_bytes(RECORDS)))
    reader = CorpusReader(path)
    check_records(list(reader))
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_csv_round_trip_with_quoted_newlines(tmp_path: Path) -> None:
    data = 'id,title,text,source\n1,서울,"서울은 ""수도""이다.\n둘째 줄",위키\nd2,,부산,\n'
    docs = list(CorpusReader(write(tmp_path / "c.csv", data)))
    assert docs == [
        Document("1", '서울은 "수도"이다.\n둘째 줄', "서울", {"source": "위키"}),
        Document("d2", "부산", "", {"source": ""}),
    ]


def test_tsv_round_trip_keeps_quotes_literal(tmp_path: Path) -> None:
    data = '_id\ttext\textra\n7\t"안녕" 하고 말했다\t값\n8\t두 번째\t\n'
    docs = list(CorpusReader(write(tmp_path / "c.tsv", data)))
    assert docs == [
        Document("7", '"안녕" 하고 말했다', "", {"extra": "값"}),
        Document("8", "두 번째", "", {"extra": ""}),
    ]


def test_parquet_round_trip_across_batches(tmp_path: Path) -> None:
    n = 2500  # more than one record batch
    table = pa.table(
        {
            "id": list(range(n)),
            "title": [f"제목 {i}" for i in range(n)],
            "text": [f"본문 {i}" for i in range(n)],
            "tags": [["가", "나"]] * n,
            "score": [i / 2 for i in range(n)],
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=700)
    reader = CorpusReader(path)
    docs = list(reader)
    assert reader.documents == n
    assert [d.id for d in docs] == [str(i) for i in range(n)]
    meta = {"tags": ["가", "나"], "score": 617.0}
    assert docs[1234] == Document("1234", "본문 1234", "제목 1234", meta)
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_directory_reading(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "b.txt", "둘째 문서")
    write(root / "a" / "z.md", "머리말\n\n# 마크다운 제목 \n본문\n# 두 번째 제목\n")
    write(root / "a" / "y" / "deep.TXT", "깊은 문서")
    write(root / "a" / "notes.md", "제목 없는 메모")
    write(root / "skip.json", '{"id": 1}')
    write(root / "image.png", b"\x89PNG")
    write(root / ".hidden" / "x.txt", "숨김")
    write(root / ".secret.txt", "숨김")
    docs = list(CorpusReader(root))
    assert [d.id for d in docs] == ["a/notes.md", "a/y/deep.TXT", "a/z.md", "b.txt"]
    z = docs[2]
    assert z.title == "마크다운 제목"
    assert z.text == "머리말\n\n# 마크다운 제목 \n본문\n# 두 번째 제목\n"
    assert z.meta == {"path": "a/z.md"}
    assert docs[0].title == "" and docs[3].title == ""
    assert [d.id for d in CorpusReader(str(root))] == [d.id for d in docs]


def test_directory_digest_tracks_content_and_names(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "a.txt", "하나")

    def digest() -> str:
        reader = CorpusReader(root)
        list(reader)
        return reader.sha256

    first = digest()
    assert first == digest()
    (root / "a.txt").rename(root / "b.txt")
    renamed = digest()
    write(root / "b.txt", "둘")
    assert len({first, renamed, digest()}) == 3


def test_stdin_text_stream() -> None:
    data = jsonl_bytes(RECORDS)
    reader = CorpusReader("-", stdin=io.StringIO(data.decode("utf-8")))
    check_records(list(reader))
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


def test_stdin_binary_buffer_digest_is_of_raw_bytes() -> None:
    data = b"\xef\xbb\xbf" + jsonl_bytes(RECORDS).replace(b"\n", b"\r\n")
    reader = CorpusReader(["-"], stdin=io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    check_records(list(reader))
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


def test_stdin_non_utf8_names_line() -> None:
    data = jsonl_bytes(RECORDS[:2]) + b'{"id": "x", "text": "\xff\xfe"}\n'
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    assert read_error("-", stdin=stdin).startswith("<stdin>:3: not valid UTF-8")


# -- fields ---------------------------------------------------------------------------------------


def test_beir_id_fallback_and_per_record_choice(tmp_path: Path) -> None:
    lines = [
        {"_id": "kq-1", "title": "임종석", "text": "본문 하나"},
        {"id": 5, "_id": "ignored", "text": "본문 둘"},
    ]
    docs = list(CorpusReader(write(tmp_path / "c.jsonl", jsonl_bytes(lines))))
    assert docs[0] == Document("kq-1", "본문 하나", "임종석", {})
    assert docs[1] == Document("5", "본문 둘", "", {"_id": "ignored"})


def test_explicit_field_names(tmp_path: Path) -> None:
    lines = [{"doc": "가", "body": "본문", "headline": 2024, "text": "다른 필드", "title": "t"}]
    fields = Fields(id="doc", text="body", title="headline")
    docs = list(CorpusReader(write(tmp_path / "c.jsonl", jsonl_bytes(lines)), fields=fields))
    assert docs == [Document("가", "본문", "2024", {"text": "다른 필드", "title": "t"})]


def test_null_title_becomes_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", jsonl_bytes([{"id": "a", "text": "본문", "title": None}]))
    assert next(iter(CorpusReader(path))).title == ""


def test_empty_text_is_skipped_and_counted(tmp_path: Path) -> None:
    lines = [{"id": "a", "text": "  \n\t"}, {"id": "b", "text": "본문"}, {"id": "c", "text": ""}]
    reader = CorpusReader(write(tmp_path / "c.jsonl", jsonl_bytes(lines)))
    assert [d.id for d in reader] == ["b"]
    assert (reader.documents, reader.skipped_empty) == (1, 2)


def test_empty_corpus_is_not_an_error(tmp_path: Path) -> None:
    reader = CorpusReader(write(tmp_path / "c.jsonl", b"\n\n"))
    assert list(reader) == []
    assert reader.documents == 0
    assert reader.sha256 == hashlib.sha256(b"\n\n").hexdigest()


# -- errors ---------------------------------------------------------------------------------------


def lines_file(tmp_path: Path, bad_line: str, name: str = "corpus.jsonl") -> Path:
    good = jsonl_bytes(RECORDS[:2]).decode("utf-8")
    return write(tmp_path / name, good + "\n" + bad_line + "\n")  # the bad line is line 4


MISSING_ID = "missing id field (tried 'id', then '_id'); the record has fields: text, a"
MISSING_TEXT = (
    "missing field 'text'; the record has fields: id, a, b, c "
    "(choose the text field with --text-field)"
)
NOT_AN_ID = "field 'id' must be a string or an integer, not"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "x" "text": "가"}', "invalid JSON (Expecting ',' delimiter at column 12)"),
        ('["id", "text"]', "expected a JSON object, found a list"),
        ('"문자열"', "expected a JSON object, found a string"),
        ('{"text": "가", "a": 1}', MISSING_ID),
        ('{"id": "x", "a": 1, "b": 2, "c": 3}', MISSING_TEXT),
        ('{"id": "x", "text": 12}', "field 'text' must be a string, not a number (12)"),
        ('{"id": "x", "text": null}', "field 'text' must be a string, not null"),
        ('{"id": "x", "text": ["가"]}', "field 'text' must be a string, not a list"),
        ('{"id": 1.5, "text": "가"}', f"{NOT_AN_ID} a number (1.5)"),
        ('{"id": null, "text": "가"}', f"{NOT_AN_ID} null"),
        ('{"id": true, "text": "가"}', f"{NOT_AN_ID} a boolean"),
        ('{"_id": " ", "text": "가"}', "field '_id' is empty"),
        ('{"id": "d2", "text": "가"}', "duplicate id 'd2' (first seen at "),
    ],
)
def test_jsonl_record_errors(tmp_path: Path, line: str, expected: str) -> None:
    path = lines_file(tmp_path, line)
    assert read_error(path).startswith(f"{path}:4: {expected}")


def test_duplicate_names_both_locations(tmp_path: Path) -> None:
    message = read_error(lines_file(tmp_path, '{"id": "d2", "text": "가"}'))
    assert message.endswith(f"(first seen at {tmp_path / 'corpus.jsonl'}:2)")


def test_duplicate_across_sources(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", jsonl_bytes(RECORDS))
    b = write(tmp_path / "b.csv", "id,text\nd9,가\n1,나\n")
    assert read_error([a, b]) == f"{b}:3: duplicate id '1' (first seen at {a}:1)"


def test_explicit_id_field_missing(tmp_path: Path) -> None:
    message = read_error(lines_file(tmp_path, '{"id": "x", "text": "가"}'), fields=Fields(id="doc"))
    assert message.startswith(f"{tmp_path / 'corpus.jsonl'}:1: missing id field (tried 'doc')")
    assert "--id-field" in message


def test_strict_rejects_empty_text(tmp_path: Path) -> None:
    path = lines_file(tmp_path, '{"id": "e", "text": " "}')
    assert read_error(path, strict=True).startswith(f"{path}:4: document 'e' has empty text")


def test_non_utf8_jsonl_names_line(tmp_path: Path) -> None:
    good = jsonl_bytes(RECORDS[:2])
    path = write(tmp_path / "c.jsonl", good + b'{"id": "x", "text": "\xea\xb0"}\n')
    assert read_error(path).startswith(f"{path}:3: not valid UTF-8 (byte 0xea at column 22)")


def test_non_utf8_in_directory_file_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "d" / "ok.txt", "좋은 파일")
    bad = write(tmp_path / "d" / "sub" / "bad.md", "# 제목\n둘째 줄\n".encode() + b"\xb0\xa1\n")
    assert read_error(tmp_path / "d").startswith(f"{bad}:3: not valid UTF-8")


def test_strict_rejects_empty_directory_file(tmp_path: Path) -> None:
    empty = write(tmp_path / "d" / "empty.txt", "  \n")
    reader = CorpusReader(tmp_path / "d")
    assert (list(reader), reader.skipped_empty) == ([], 1)
    assert read_error(tmp_path / "d", strict=True).startswith(f"{empty}: document 'empty.txt'")


def test_csv_missing_text_column_names_header(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "id,body\n1,가\n")
    message = read_error(path)
    assert message == (
        f"{path}:1: missing field 'text'; the header has columns: id, body "
        "(choose the text field with --text-field)"
    )


def test_csv_wrong_field_count_names_record_start(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", 'id,text\n1,"여러\n줄"\n\n2,가,추가\n')
    assert read_error(path).startswith(f"{path}:5: expected 2 fields as in the header, found 3")


def test_csv_bad_quoting_and_duplicate_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", 'id,text\n1,가\n2,"나"다\n')
    assert read_error(path).startswith(f"{path}:3: invalid CSV")
    dup = write(tmp_path / "d.csv", "id,text,text\n")
    assert read_error(dup) == f"{dup}:1: the header repeats the column 'text'"


def test_csv_non_utf8_and_bom(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.csv", "\ufeffid,text\n1,가\n".encode())
    assert [d.id for d in CorpusReader(ok)] == ["1"]
    bad = write(tmp_path / "bad.csv", "id,text\n1,가\n".encode() + b"2,\xff\n")
    assert read_error(bad).startswith(f"{bad}:3: not valid UTF-8")


def test_corrupt_gzip(tmp_path: Path) -> None:
    records = [{"id": f"g{i}", "text": f"본문 {i} " * 20} for i in range(2000)]
    data = gzip.compress(jsonl_bytes(records))
    truncated = write(tmp_path / "t.jsonl.gz", data[: len(data) // 2])
    assert read_error(truncated).startswith(f"{truncated}: corrupt gzip data near line")
    plain = write(tmp_path / "p.jsonl.gz", jsonl_bytes(RECORDS))
    assert read_error(plain).startswith(f"{plain}: corrupt gzip data near line 1")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "c.parquet", b"PAR1 this is not parquet")
    assert read_error(path).startswith(f"{path}: not a readable Parquet file")


def test_parquet_errors_name_row(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["가", "나", None]}), path)
    assert read_error(path) == f"{path}:row 3: field 'text' must be a string, not null"
    cols = tmp_path / "d.parquet"
    pq.write_table(pa.table({"key": ["a"], "text": ["가"]}), cols)
    assert read_error(cols).startswith(
        f"{cols}: missing id field (tried 'id', then '_id'); the file has columns: key, text"
    )


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    txt = write(tmp_path / "notes.txt", "가")
    with pytest.raises(CorpusError, match=r"notes\.txt.*unknown corpus format.*\.jsonl.*\.parquet"):
        CorpusReader(txt)
    with pytest.raises(CorpusError, match=r"'.*nope\.jsonl' does not exist"):
        CorpusReader([txt.with_name("nope.jsonl")])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.jsonl.gz", "jsonl.gz"),
        ("a.ndjson.gz", "jsonl.gz"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.parquet", "parquet"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(str(write(tmp_path / name, b""))) == fmt
    assert detect_format("-") == "stdin"
    assert detect_format(str(tmp_path)) == "dir"


# -- streaming and state --------------------------------------------------------------------------


def big_jsonl(tmp_path: Path, n: int = 200_000) -> Path:
    lines = "".join(f'{{"id": "d{i}", "text": "문서 번호 {i}"}}\n' for i in range(n))
    return write(tmp_path / "big.jsonl", lines)


def fd_position(path: Path) -> int:
    """The file offset of this process's open descriptor for path (Linux /proc)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == str(path):
            with open(f"/proc/self/fdinfo/{fd}") as info:
                return int(info.readline().split()[1])
    raise AssertionError(f"{path} is not open")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="needs Linux /proc")
def test_first_document_reads_only_the_start_of_a_file(tmp_path: Path) -> None:
    path = big_jsonl(tmp_path)
    size = path.stat().st_size
    docs = iter(CorpusReader(path))
    assert next(docs).id == "d0"
    assert fd_position(path) < size // 50
    assert next(docs).id == "d1"


class CountingRaw(io.RawIOBase):
    """A raw byte stream that records how many bytes have been read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._data.readinto(buffer)
        self.consumed += n
        return n


def test_first_document_reads_only_the_start_of_stdin(tmp_path: Path) -> None:
    data = big_jsonl(tmp_path).read_bytes()
    raw = CountingRaw(data)
    reader = CorpusReader("-", stdin=io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8"))
    docs = iter(reader)
    assert next(docs).id == "d0"
    assert reader.documents == 1
    assert raw.consumed < len(data) // 50
    with pytest.raises(RuntimeError, match="full iteration"):
        _ = reader.sha256
    assert sum(1 for _ in docs) == 199_999
    assert raw.consumed == len(data)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


def test_iterating_again_restarts(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", jsonl_bytes(RECORDS + [{"id": "e", "text": ""}]))
    reader = CorpusReader(path)
    first = list(reader)
    assert list(reader) == first
    assert (reader.documents, reader.skipped_empty) == (3, 1)


def test_several_sources_digest_of_digests(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", jsonl_bytes(RECORDS[:1]))
    b = write(tmp_path / "b.jsonl", jsonl_bytes(RECORDS[1:]))
    reader = CorpusReader([a, b])
    check_records(list(reader))
    parts = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert reader.sha256 == hashlib.sha256("\n".join(parts).encode()).hexdigest()


def test_programmer_errors() -> None:
    with pytest.raises(ValueError):
        CorpusReader([])
    with pytest.raises(ValueError):
        CorpusReader("-", fields=Fields(text=""))


@pytest.mark.skipif(not KORQUAD.exists(), reason=missing(KORQUAD))
def test_korquad_corpus() -> None:
    raw = KORQUAD.read_bytes()
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    reader = CorpusReader(KORQUAD)
    docs = list(reader)
    assert reader.documents == len(docs) == len(lines) == 961
    assert docs[0].id == lines[0]["_id"] == "kq1dev-000-00"
    assert docs[0].title == lines[0]["title"]
    assert [d.id for d in docs] == [line["_id"] for line in lines]
    assert reader.skipped_empty == 0
    assert reader.sha256 == hashlib.sha256(raw).hexdigest()
