"""The exceptions kosearch raises for problems a user can fix.

Every message is one complete sentence meant for the person at the keyboard: it names the
file, line, value or setting at fault and, where there is one, the way out. The CLI prints
``str(error)`` as a single ``Error: ...`` line and exits with status 1.

    KosearchError
    ├── CorpusError             bad corpus file or record ("corpus.jsonl:17: missing field 'text'")
    ├── DatasetError            bad evaluation data (BEIR folder, STS pairs)
    ├── ConfigError             invalid settings (k <= 0, overlap >= budget, unknown mode)
    │   └── FilterError         a bad metadata filter (unknown field or operator, wrong type)
    ├── IndexNotFoundError      no index at the given path
    ├── IndexFormatError        an index that is corrupt, incomplete or from a newer kosearch
    ├── ModelMismatchError      query model/dimension differs from the index's
    ├── ModelLoadError          a model that cannot be loaded (offline, bad path)
    └── MissingDependencyError  an optional extra is not installed
"""

from __future__ import annotations


class KosearchError(Exception):
    """Base class: a problem the user can fix; ``str(e)`` is a complete sentence."""


class CorpusError(KosearchError):
    """A corpus file or one of its records cannot be read."""


class DatasetError(KosearchError):
    """An evaluation dataset (BEIR folder, STS pairs) is missing or malformed."""


class ConfigError(KosearchError):
    """A setting has an invalid value."""


class IndexNotFoundError(KosearchError):
    """There is no kosearch index at the given path."""


class IndexFormatError(KosearchError):
    """An index on disk is corrupt, incomplete, or written by a newer kosearch."""


class ModelMismatchError(KosearchError):
    """The query encoder does not match the model the index was built with."""


class ModelLoadError(KosearchError):
    """A sentence-transformers model cannot be loaded."""


class MissingDependencyError(KosearchError):
    """An optional dependency is not installed."""


class FilterError(ConfigError):
    """A metadata filter is malformed, names an unknown field or operator, or has a value of
    the wrong type for its field."""
