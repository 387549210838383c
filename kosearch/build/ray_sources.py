"""The corpus files of a ``ray`` engine run: local paths or URIs any pyarrow filesystem
understands, checked (existence, format, one filesystem) before Ray is reached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kosearch.build.source import is_file_corpus
from kosearch.errors import ConfigError, CorpusError


@dataclass(frozen=True)
class SourceFile:
    """One corpus file: as named by the user, its format, filesystem and path there."""

    label: str
    fmt: str
    filesystem: Any
    path: str

    @property
    def local(self) -> bool:
        """Whether the file is on this machine's disk, under the name the user gave."""
        import pyarrow.fs as pafs

        return isinstance(self.filesystem, pafs.LocalFileSystem) and "://" not in self.label


def resolve_sources(corpus: Any) -> list[SourceFile]:
    """The corpus files of a Ray run (local paths or pyarrow-filesystem URIs), checked."""
    import pyarrow.fs as pafs

    from kosearch.ingest.formats import _SUFFIXES

    if not is_file_corpus(corpus):
        raise ConfigError("--engine ray reads corpus files; pass file paths or URIs, not "
                          "Python documents")
    items = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    found: list[SourceFile] = []
    for item in items:
        label = os.fspath(item)
        if label == "-":
            raise CorpusError("--engine ray cannot read stdin; write the corpus to a file")
        if "://" in label:
            try:
                filesystem, path = pafs.FileSystem.from_uri(label)
            except Exception as error:  # pyarrow raises several kinds for a bad URI
                raise CorpusError(f"cannot open '{label}' ({error})") from None
        else:
            filesystem, path = pafs.LocalFileSystem(), os.path.abspath(label)
        try:
            kind = filesystem.get_file_info(path).type
        except Exception as error:
            raise CorpusError(f"cannot open '{label}' ({error})") from None
        if kind == pafs.FileType.NotFound:
            raise CorpusError(f"corpus file '{label}' does not exist")
        if kind == pafs.FileType.Directory:
            raise CorpusError(f"'{label}' is a folder; --engine ray reads corpus files "
                              "(JSONL, JSONL.gz, CSV, TSV, Parquet): name the files")
        fmt = next((f for suffix, f in _SUFFIXES if label.lower().endswith(suffix)), None)
        if fmt is None:
            raise CorpusError(f"cannot read '{label}': unknown corpus format (--engine ray "
                              "reads .jsonl, .ndjson, .jsonl.gz, .ndjson.gz, .csv, .tsv, "
                              ".parquet)")
        found.append(SourceFile(label, fmt, filesystem, path))
    kinds = {type(f.filesystem).__name__ for f in found}
    if len(kinds) > 1:
        raise ConfigError(f"--engine ray reads the files of one run from one filesystem, got "
                          f"{', '.join(sorted(kinds))}")
    return found
