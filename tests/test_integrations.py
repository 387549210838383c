"""LangChain and LlamaIndex adapters, with the real framework objects (skipped when absent)."""

from __future__ import annotations

import asyncio
import importlib
import sys

import numpy as np
import pytest
from fakes import HashEncoder

from kosearch import ConfigError, Document, MissingDependencyError
from kosearch.index import Index

DOCS = [
    Document("seoul", "서울은 대한민국의 수도이다. 서울에는 한강이 흐른다.", "서울",
             {"category": "지리"}),
    Document("busan", "부산은 대한민국 제2의 도시이며 해운대 해수욕장으로 유명하다.", "부산",
             {"n": 2}),
    Document("kimchi", "김치는 배추와 고춧가루로 담그는 한국의 전통 발효 음식이다.", "김치"),
    Document("hangul", "한글은 세종대왕이 1443년에 창제한 문자로 훈민정음이라고도 부른다.", "한글"),
    Document("jeju", "제주도는 화산섬으로 한라산과 올레길이 유명한 관광지이다.", ""),
]
METADATA_KEYS = {"id", "chunk", "score", "rank", "title", "start", "end", "meta", "scores",
                 "highlights"}


@pytest.fixture(scope="module")
def index() -> Index:
    return Index.build(DOCS, encoder=HashEncoder())


def hide(monkeypatch: pytest.MonkeyPatch, package: str, adapter: str) -> None:
    """Make ``import package`` fail as if it were not installed, and forget the adapter."""
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, adapter, raising=False)


# ---------------------------------------------------------------------------- LangChain


def test_langchain_retriever_returns_documents_with_metadata_and_scores(index: Index) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever

    from kosearch.integrations.langchain import KosearchRetriever

    retriever = KosearchRetriever(index=index, k=3)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("서울의 강")
    hits = index.search("서울의 강", 3)
    assert all(isinstance(d, LCDocument) for d in docs)
    assert [d.page_content for d in docs] == [h.text for h in hits]
    first = docs[0].metadata
    assert set(first) == METADATA_KEYS
    assert first["id"] == "seoul" and first["rank"] == 1 and first["title"] == "서울"
    assert first["meta"] == {"category": "지리"} and first["score"] == hits[0].score
    assert {"dense_rank", "lexical_rank"} <= set(first["scores"])
    assert first["highlights"] == hits[0].highlights.to_dict()  # JSON-ready


def test_langchain_retriever_parameters_batch_and_async(index: Index) -> None:
    pytest.importorskip("langchain_core")
    from pydantic import ValidationError

    from kosearch.integrations.langchain import KosearchRetriever

    dense = KosearchRetriever(index=index, k=2, mode="dense", passages=True)
    assert [d.metadata["id"] for d in dense.invoke("부산")] == [
        h.id for h in index.search("부산", 2, mode="dense", passages=True)
    ]
    queries = ["서울", "부산 바다", "김치", "한글", "제주"] * 4
    batched = dense.batch(queries)  # LangChain runs these on a thread pool
    assert [[d.metadata["id"] for d in docs] for docs in batched] == [
        [h.id for h in index.search(q, 2, mode="dense", passages=True)] for q in queries
    ]
    assert asyncio.run(dense.ainvoke("김치"))[0].metadata["id"] == "kimchi"
    with pytest.raises(ValidationError):
        KosearchRetriever(index=index, mode="semantic")
    with pytest.raises(ValidationError):
        KosearchRetriever(index=index, k=0)


def test_langchain_embeddings_use_the_index_encoder(index: Index) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings

    from kosearch.integrations.langchain import KosearchEmbeddings

    embeddings = KosearchEmbeddings(index)
    assert isinstance(embeddings, Embeddings)
    texts = ["서울은 수도이다", "부산 바다", "김치"]
    vectors = embeddings.embed_documents(texts)
    assert len(vectors) == 3 and all(len(v) == index.manifest.model.dim for v in vectors)
    assert all(isinstance(x, float) for x in vectors[0])
    raw = index.encoder.encode_passages(texts)
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)  # cosine index: unit vectors
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    query = embeddings.embed_query("서울")
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, rtol=1e-6)
    assert embeddings.embed_documents([]) == []
    unnormalized = KosearchEmbeddings(index, normalize=False).embed_query("서울")
    np.testing.assert_allclose(unnormalized, index.encoder.encode_queries(["서울"])[0], rtol=1e-6)


def test_langchain_missing_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "langchain_core", "kosearch.integrations.langchain")
    with pytest.raises(MissingDependencyError, match=r"pip install 'kosearch\[langchain\]'"):
        importlib.import_module("kosearch.integrations.langchain")
    import kosearch.integrations as integrations

    with pytest.raises(MissingDependencyError, match="langchain-core"):
        integrations.KosearchRetriever  # noqa: B018 - the lazy attribute imports the adapter


# ---------------------------------------------------------------------------- LlamaIndex


def test_llama_retriever_returns_scored_text_nodes(index: Index) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, TextNode

    from kosearch.integrations.llama_index import KosearchLlamaRetriever

    retriever = KosearchLlamaRetriever(index, k=3)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve("서울의 강")
    hits = index.search("서울의 강", 3)
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [n.score for n in nodes] == [h.score for h in hits]
    first = nodes[0].node
    assert first.text == hits[0].text and first.node_id == "seoul#0"
    assert set(first.metadata) == METADATA_KEYS and first.metadata["meta"] == {"category": "지리"}
    assert first.relationships[NodeRelationship.SOURCE].node_id == "seoul"
    shown = first.get_content(metadata_mode=MetadataMode.LLM)
    assert "title: 서울" in shown and "dense_rank" not in shown and "snippet" not in shown
    lexical = KosearchLlamaRetriever(index, k=1, mode="lexical", passages=True)
    assert asyncio.run(lexical.aretrieve("김치"))[0].node.metadata["id"] == "kimchi"


def test_llama_retriever_checks_its_settings(index: Index) -> None:
    pytest.importorskip("llama_index.core")
    from kosearch.integrations.llama_index import KosearchLlamaRetriever

    with pytest.raises(ConfigError, match="k must be"):
        KosearchLlamaRetriever(index, k=0)
    with pytest.raises(ConfigError, match="unknown search mode"):
        KosearchLlamaRetriever(index, mode="semantic")


def test_llama_missing_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "llama_index", "kosearch.integrations.llama_index")
    with pytest.raises(MissingDependencyError, match=r"pip install 'kosearch\[llamaindex\]'"):
        importlib.import_module("kosearch.integrations.llama_index")


def test_integrations_package_is_lazy() -> None:
    import kosearch.integrations as integrations

    with pytest.raises(AttributeError, match="no attribute"):
        integrations.Nothing  # noqa: B018
    # (what importing it costs: tests/test_import_cost.py)
