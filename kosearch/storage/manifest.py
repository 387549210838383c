"""``manifest.json``: what an index was built from, so that it can be checked and reopened.

The manifest is plain JSON (never pickle). ``FORMAT_VERSION`` is bumped whenever the meaning of
the files in an index directory changes; :func:`read_manifest` refuses newer formats.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kosearch.errors import IndexFormatError, IndexNotFoundError
from kosearch.settings import ChunkSettings, Fields, IndexSettings
from kosearch.storage.layout import MANIFEST_FILE

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The encoder an index was built with; queries must use the same one."""

    name: str
    dim: int
    fingerprint: str
    max_tokens: int
    query_prompt: str = ""
    passage_prompt: str = ""
    precision: str = "fp32"  # of the passage vectors; queries are always encoded in fp32
    #: What ``--precision auto`` measured when it chose ``precision`` on the build machine
    #: (:class:`kosearch.encoding.calibrate.Calibration`); empty when it did not measure.
    calibration: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything needed to reopen and verify an index directory."""

    model: ModelInfo
    metric: str
    faiss: dict[str, Any]
    counts: dict[str, int]
    chunking: dict[str, Any]
    lexical: dict[str, Any] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    kosearch_version: str = ""
    format_version: int = FORMAT_VERSION
    #: The typed metadata fields, ``{name: {"type": ..., ["kinds": [...]]}}``
    #: (:mod:`kosearch.storage.metadata`); empty for indexes written before typed fields.
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize as pretty, UTF-8 JSON."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=False)

    def settings(self) -> IndexSettings:
        """The settings this index was built with, as a build would be given them.

        Read back from the sections the manifest records them in (``model``, ``metric``,
        ``fields``, ``chunking``, ``lexical``, ``faiss``); an update runs with these.
        """
        chunking = {k: self.chunking[k] for k in ("max_tokens", "overlap", "enabled")
                    if k in self.chunking}
        return IndexSettings(
            model=self.model.name, metric=self.metric,
            fields=Fields(**self.fields) if self.fields else Fields(),
            chunking=ChunkSettings(**chunking), lexical=self.lexical is not None,
            query_prompt=self.model.query_prompt, passage_prompt=self.model.passage_prompt,
            index_type=self.faiss.get("requested") or "flat",
            precision=self.model.precision,
        )


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string with a ``Z`` suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` into ``directory`` (the caller makes the directory swap atomic)."""
    target = Path(directory) / MANIFEST_FILE
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(manifest.to_json())
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` from an index directory.

    Raises:
        IndexNotFoundError: The directory or its manifest does not exist.
        IndexFormatError: The manifest is not valid JSON, lacks fields, or is from a newer kosearch.
    """
    directory = Path(directory)
    target = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise IndexNotFoundError(f"no kosearch index at {directory} (the directory does not exist)")
    if not target.is_file():
        raise IndexNotFoundError(f"no kosearch index at {directory} ({MANIFEST_FILE} is missing)")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFormatError(f"{target} is corrupt: {e}") from e
    if not isinstance(data, dict):
        raise IndexFormatError(f"{target} is corrupt: expected a JSON object")
    return _from_dict(data, target)


def _from_dict(data: dict[str, Any], source: Path) -> Manifest:
    version = data.get("format_version")
    if not isinstance(version, int):
        raise IndexFormatError(f"{source} has no valid format_version")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{source} uses index format {version}, newer than this kosearch supports "
            f"(<= {FORMAT_VERSION}); upgrade kosearch or rebuild the index"
        )
    try:
        model = ModelInfo(**data["model"])
        fields_ = {k: data[k] for k in ("metric", "faiss", "counts", "chunking")}
    except (KeyError, TypeError) as e:
        raise IndexFormatError(f"{source} is missing or has a malformed field: {e}") from e
    optional = ("lexical", "fields", "corpus", "created", "updated", "kosearch_version",
                "metadata")
    return Manifest(
        model=model,
        format_version=version,
        **fields_,
        **{k: data[k] for k in optional if k in data},
    )
