"""The precision a Ray build's actors encode in, and what the index records of it.

``--precision auto`` on CPU workers is measured by the actors themselves, each on its own node
(the driver's CPU need not be theirs), as a local build measures
(:mod:`kosearch.encoding.calibrate`): once per model and kind of machine, cached on the node,
the actors of one node taking turns so that one measures and the others read its result. The
driver's ``KOSEARCH_CALIBRATE`` decides whether they measure. Every result row carries the
precision of its vector, and each call's first row what ``auto`` measured; the manifest
records them (:func:`encoded_precision`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def worker_precision(requested: str | None, device: str) -> dict[str, Any]:
    """The actors' ``precision`` and whether their ``auto`` measures (``measure``): ``auto``
    measures on CPU workers unless ``KOSEARCH_CALIBRATE=0``; anything else is resolved here."""
    from kosearch.encoding.calibrate import measures
    from kosearch.encoding.precision import resolve_precision

    if measures(requested, device):
        return {"precision": "auto", "measure": True}
    return {"precision": resolve_precision(requested, device), "measure": False}


COLUMNS_OF_PRECISION = ["precision", "calibration"]


def encoded_precision(tables: Iterable[pa.Table],
                      fallback: str | None) -> tuple[str | None, dict[str, Any]]:
    """The precision of the actors' vectors (``fallback`` if no table says), and what their
    ``auto`` measured.

    One precision and one measurement in the common case. Nodes that measured differently
    (other CPUs) give ``{"nodes": [...]}``, and nodes that chose different precisions give
    ``auto``, so that an update measures again; every precision passed the quality guard.
    """
    counts: dict[str, int] = {}
    records: set[str] = set()
    for table in tables:
        for name in table.column("precision").to_pylist():
            counts[name] = counts.get(name, 0) + 1
        records.update(r for r in table.column("calibration").to_pylist() if r is not None)
    if not counts:
        return fallback, {}
    nodes = [json.loads(r) for r in sorted(records)]
    precision = next(iter(counts)) if len(counts) == 1 else "auto"
    if len(nodes) <= 1:
        return precision, nodes[0] if nodes else {}
    return precision, {"choice": precision, "passages": dict(sorted(counts.items())),
                       "nodes": nodes}


