"""The HTTP API's request and response models, and the wording of its validation errors.

The models are built per app with pydantic's ``create_model``, so that each app's limits
(``max_k``, ``max_query_chars``, ...) are enforced by the schema and shown in the OpenAPI docs.
Search modes, hit fields and update report fields come from the lists in :mod:`kosearch.types`,
so the HTTP schema cannot drift from the library's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_args, get_origin, get_type_hints

from kosearch.settings import SearchOptions
from kosearch.types import HIT_FIELDS, MODES, REPORT_FIELDS, Highlights, Hit, UpdateReport

if TYPE_CHECKING:
    from fastapi import Request
    from pydantic import BaseModel


#: The :class:`~kosearch.settings.SearchOptions` the HTTP API takes (reranking and fusion are
#: the server's own choice).
SEARCH_FIELDS = ("mode", "passages", "highlights")

def request_models(
    max_k: int, max_query_chars: int, max_batch: int, max_documents: int
) -> dict[str, type[BaseModel]]:
    """Request and response models, with this app's limits in the schema (and the docs).

    Returns:
        ``{"search", "batch", "result", "results", "documents", "delete", "report"}``: the
        search and batch requests and responses, and the write requests and their report.
    """
    from typing import Annotated, Literal

    from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, create_model

    def not_blank(text: str) -> str:
        if not text.strip():
            raise ValueError("the query is blank; give some text to search for")
        return text

    query = Annotated[str, StringConstraints(min_length=1, max_length=max_query_chars),
                      AfterValidator(not_blank)]
    defaults = SearchOptions()
    common: dict[str, Any] = {
        "k": (int, Field(10, ge=1, le=max_k, description="How many hits per query.")),
        "mode": (Literal[MODES] | None,  # type: ignore[valid-type]
                 Field(defaults.mode,
                       description="Default: hybrid when the index has BM25, else dense.")),
        "passages": (bool, Field(defaults.passages,
                                 description="Raw passage hits, not one per document.")),
        "highlights": (bool, Field(defaults.highlights, description=(
            "Give each hit its best sentence(s) for the query and the character offsets of "
            "the matched words; false: highlights null (a little faster)."))),
        "filter": (dict[str, Any] | None, Field(None, description=(
            'Search only documents whose metadata match (Mongo-style): {"category": "법률"}, '
            '{"year": {"$gte": 2020}}, {"tags": {"$in": ["a", "b"]}}, {"id": {"$in": [...]}}; '
            "operators $eq $ne $gt $gte $lt $lte $in $nin $exists $contains $and $or $not. "
            "A bad filter is answered 400."),
            examples=[{"year": {"$gte": 2020}}])),
    }
    strict = ConfigDict(strict=True, extra="forbid")
    hit = create_model("Hit", **_required_fields(Hit, HIT_FIELDS))
    result = create_model("SearchResponse", query=(str, ...), hits=(list[hit], ...))  # type: ignore[valid-type]
    return {
        "search": create_model("SearchRequest", __config__=strict, query=(query, ...), **common),
        "batch": create_model(
            "BatchRequest", __config__=strict,
            queries=(Annotated[list[query], Field(min_length=1, max_length=max_batch)], ...),
            **common,
        ),
        "result": result,
        "results": create_model("BatchResponse", results=(list[result], ...)),  # type: ignore[valid-type]
        **_write_models(max_documents, strict),
    }


def _write_models(max_documents: int, strict: Any) -> dict[str, type[BaseModel]]:
    from typing import Annotated, Literal

    from pydantic import Field, StringConstraints, create_model

    ident = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    document = create_model(
        "DocumentIn", __config__=strict, id=(ident, ...), text=(str, ...),
        title=(str, Field("", description="Optional title, encoded with each passage.")),
        meta=(dict[str, Any], Field(default_factory=dict, description="Other fields, kept.")),
    )
    listed = Field(min_length=1, max_length=max_documents)
    return {
        "documents": create_model(
            "DocumentsRequest", __config__=strict,
            documents=(Annotated[list[document], listed], ...),  # type: ignore[valid-type]
            mode=(Literal["upsert", "add"], Field("upsert", description=(
                "upsert: add new ids and re-encode changed documents; add: refuse known ids."))),
        ),
        "delete": create_model(
            "DeleteRequest", __config__=strict, ids=(Annotated[list[ident], listed], ...),
        ),
        "report": create_model(
            "UpdateReport", **_required_fields(UpdateReport, REPORT_FIELDS),
            documents=(int, ...), passages=(int, ...),
            skipped=(list[create_model("Skipped", id=(str, ...), reason=(str, ...))], Field(
                default_factory=list, description="Documents not indexed, and why.")),
        ),
    }


#: Why a document sent to ``POST /documents`` with a blank text is not indexed.
EMPTY_TEXT = "empty text: a document needs some non-blank text to be indexed"


def report_body(
    report: UpdateReport, counts: Mapping[str, int], skipped: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON answer to a write: what changed (:data:`~kosearch.types.REPORT_FIELDS`), the
    index's document and passage counts, and the ids of the documents ``skipped`` for an empty
    text, each with the reason."""
    body = {name: _json_value(getattr(report, name)) for name in REPORT_FIELDS}
    return {**body, "documents": counts["documents"], "passages": counts["passages"],
            "skipped": [{"id": i, "reason": EMPTY_TEXT} for i in skipped]}


def _required_fields(cls: type, names: tuple[str, ...]) -> dict[str, Any]:
    """``create_model`` field definitions: each of ``names``, required, typed as ``cls`` types
    it but in its JSON shape (a mapping is an object, a tuple an array)."""
    hints = get_type_hints(cls)
    return {name: (_json_type(hints[name]), ...) for name in names}


def _json_type(hint: Any) -> Any:
    if Highlights in get_args(hint):
        return _highlights_model() | None
    origin = get_origin(hint)
    if origin is Mapping:
        return dict[get_args(hint)]  # type: ignore[misc]
    if origin is tuple:
        return list[get_args(hint)[0]]  # type: ignore[misc]
    return hint


def _highlights_model() -> Any:
    """:meth:`Highlights.to_dict`'s shape: the snippet, its offsets and the matched spans."""
    from pydantic import Field, create_model

    span = create_model("Span", start=(int, ...), end=(int, ...))
    return create_model(
        "Highlights",
        snippet=(str, Field(..., description="The hit's best sentence(s): text[start:end].")),
        start=(int, ...), end=(int, ...),
        spans=(list[span], Field(..., description=(  # type: ignore[valid-type]
            "Offsets in the hit's text of the matched words, sorted, inside [start, end)."))),
    )


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The validated body, or an HTTP error whose message says what is wrong."""
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    body = await request.body()
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as error:
        status, message = describe_errors(error.errors(include_url=False))
        raise HTTPException(status, message) from None


def describe_errors(errors: list[Any]) -> tuple[int, str]:
    """(status, one sentence) for pydantic/FastAPI validation errors."""
    first = errors[0]
    kind, loc = first.get("type", ""), [str(p) for p in first.get("loc", ()) if p != "body"]
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return 400, f"the request body is not valid JSON{f' ({reason})' if reason else ''}"
    extra = len(errors) - 1
    more = f" (and {extra} more problem{'s' * (extra > 1)})" if extra else ""
    if not loc:
        return 422, f"the request body must be a JSON object{more}"
    field = ".".join(loc)
    if kind == "missing":
        return 422, f"the field '{field}' is required{more}"
    if kind == "extra_forbidden":
        return 422, f"unknown field '{field}'{more}"
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    return 422, f"invalid '{field}': {message[:1].lower()}{message[1:]}{more}"
