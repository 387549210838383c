"""Reciprocal-rank and convex fusion, and normalization by fixed statistics, checked against
hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kosearch.retrieval.fusion import Spread, combine, convex, rrf


def _approx(result: list[tuple[object, float]]) -> list[tuple[object, object]]:
    return [(key, pytest.approx(score)) for key, score in result]


# --- rrf -----------------------------------------------------------------------------------


def test_rrf_hand_computed() -> None:
    dense = [3, 1, 2]
    lexical = [1, 4]
    result = rrf([dense, lexical], k=60)
    expected = {
        1: 1 / 62 + 1 / 61,
        3: 1 / 61,
        2: 1 / 63,
        4: 1 / 62,
    }
    assert [key for key, _ in result] == [1, 3, 4, 2]
    for key, score in result:
        assert score == pytest.approx(expected[key], rel=1e-12)


def test_rrf_default_k_is_60() -> None:
    assert rrf([["a"]]) == [("a", pytest.approx(1 / 61))]


def test_rrf_weights() -> None:
    # With weight 3 on the second list its top item overtakes the first list's top item.
    result = rrf([["a", "b"], ["b", "c"]], k=0, weights=[1.0, 3.0])
    assert result == _approx([("b", 1 / 2 + 3 / 1), ("c", 3 / 2), ("a", 1.0)])


def test_rrf_zero_weight_ignores_a_list_but_keeps_its_candidates() -> None:
    result = rrf([["a"], ["z"]], k=1, weights=[1.0, 0.0])
    assert result == [("a", 0.5), ("z", 0.0)]


def test_rrf_ties_follow_first_appearance() -> None:
    # x and y both get 1/(k+1) + 1/(k+2); x appears first (first list, rank 1).
    result = rrf([["x", "y"], ["y", "x"]], k=60)
    assert [key for key, _ in result] == ["x", "y"]
    assert result[0][1] == result[1][1]
    result = rrf([["y", "x"], ["x", "y"]], k=60)
    assert [key for key, _ in result] == ["y", "x"]


def test_rrf_tie_is_exact_for_permuted_contributions() -> None:
    # Same multiset of contributions in different orders must give bit-identical sums.
    lists = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    scores = [score for _, score in rrf(lists, k=60)]
    assert scores[0] == scores[1] == scores[2]
    assert [key for key, _ in rrf(lists, k=60)] == ["a", "b", "c"]


def test_rrf_duplicate_in_a_list_counts_once_at_best_rank() -> None:
    assert rrf([["a", "b", "a"]], k=0) == [("a", 1.0), ("b", 0.5)]


def test_rrf_empty_inputs() -> None:
    assert rrf([]) == []
    assert rrf([[], []]) == []
    assert rrf([[], [7]], k=0) == [(7, 1.0)]


@pytest.mark.parametrize(
    ("weights", "k"), [([1.0], 60), ([1.0, -0.5], 60), ([1.0, math.nan], 60), (None, -1)]
)
def test_rrf_rejects_bad_arguments(weights: list[float] | None, k: int) -> None:
    with pytest.raises(ValueError):
        rrf([["a"], ["b"]], k=k, weights=weights)


# --- convex --------------------------------------------------------------------------------


def test_convex_minmax_hand_computed() -> None:
    dense = [(1, 0.9), (2, 0.7), (3, 0.5)]  # -> 1.0, 0.5, 0.0
    lexical = [(3, 12.0), (4, 6.0), (1, 2.0)]  # -> 1.0, 0.4, 0.0
    result = convex([dense, lexical], weights=[0.7, 0.3])
    expected = {1: 0.7, 2: 0.35, 3: 0.3, 4: 0.3 * 0.4}
    assert [key for key, _ in result] == [1, 2, 3, 4]
    for key, score in result:
        assert score == pytest.approx(expected[key])


def test_convex_missing_candidate_gets_minmax_floor() -> None:
    result = convex([[("a", 10.0), ("b", 0.0)], [("c", 5.0), ("a", 0.0)]])
    # a: 1 + 0; b: 0 + missing(0); c: missing(0) + 1
    assert result == _approx([("a", 1.0), ("c", 1.0), ("b", 0.0)])


def test_convex_equal_scores_normalize_to_one() -> None:
    result = convex([[("a", 3.0), ("b", 3.0)], [("c", 1.0), ("a", 0.0)]])
    # list 1: a=1, b=1, c missing -> 0; list 2: c=1, a=0, b missing -> 0
    assert result == _approx([("a", 1.0), ("b", 1.0), ("c", 1.0)])
    single = convex([[("only", 0.2)]], normalize="zscore")
    assert single == [("only", 1.0)]


def test_convex_zscore_hand_computed() -> None:
    # list 1: mean 2, pstdev sqrt(2/3); list 2 only has x and y.
    sd = math.sqrt(2 / 3)
    lists = [[("x", 3.0), ("y", 2.0), ("z", 1.0)], [("y", 4.0), ("x", 2.0)]]
    result = convex(lists, normalize="zscore")
    z1 = {"x": 1 / sd, "y": 0.0, "z": -1 / sd}
    z2 = {"y": 1.0, "x": -1.0}  # mean 3, pstdev 1
    expected = {key: z1[key] + z2.get(key, -1.0) for key in z1}  # z missing -> min z = -1
    assert [key for key, _ in result] == sorted(expected, key=lambda key: -expected[key])
    for key, score in result:
        assert score == pytest.approx(expected[key])


def test_convex_none_keeps_raw_scores_and_missing_gets_list_minimum() -> None:
    result = convex([[("a", 5.0), ("b", 1.0)], [("c", 2.0)]], normalize="none")
    # a: 5 + 2(min of list 2); b: 1 + 2; c: 1 (min of list 1) + 2
    assert result == _approx([("a", 7.0), ("b", 3.0), ("c", 3.0)])


def test_convex_ties_follow_first_appearance() -> None:
    result = convex([[("p", 1.0), ("q", 0.0)], [("q", 1.0), ("p", 0.0)]])
    assert [key for key, _ in result] == ["p", "q"]
    assert result[0][1] == result[1][1]


def test_convex_empty_inputs() -> None:
    assert convex([]) == []
    assert convex([[], []]) == []
    assert convex([[], [("a", 2.0)]]) == [("a", 1.0)]


def test_convex_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        convex([[("a", 1.0)]], weights=[1.0, 1.0])
    with pytest.raises(ValueError):
        convex([[("a", 1.0)]], weights=[-1.0])
    with pytest.raises(ValueError):
        convex([[("a", 1.0)]], normalize="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        convex([[("a", math.inf)]])


_LISTS = st.lists(
    st.lists(st.tuples(st.integers(0, 20), st.floats(-100, 100)), max_size=8), max_size=4
)


@given(_LISTS)
def test_fusion_properties(lists: list[list[tuple[int, float]]]) -> None:
    """Both fusions return each candidate once, best first, over exactly the input keys."""
    keys = {key for pairs in lists for key, _ in pairs}
    for result in (rrf([[key for key, _ in pairs] for pairs in lists]), convex(lists)):
        assert [key for key, _ in result] == list(dict.fromkeys(key for key, _ in result))
        assert {key for key, _ in result} == keys
        scores = [score for _, score in result]
        assert scores == sorted(scores, reverse=True)


# --- Spread and combine: fusion with fixed per-query statistics -----------------------------


def test_spread_reads_the_best_depth_scores_only() -> None:
    spread = Spread.of([9.0, 7.0, 5.0, 1.0, -100.0], depth=3)
    assert (spread.top, spread.floor) == (9.0, 5.0)
    assert spread.mean == pytest.approx(7.0)
    assert spread.std == pytest.approx(math.sqrt(8 / 3))


def test_spread_pads_a_short_list_with_the_score_of_unlisted_rows() -> None:
    # BM25 lists only matching rows: with 2 matches in a collection of 10, the 3rd best is 0
    spread = Spread.of([4.0, 2.0], depth=3, size=10)
    assert (spread.top, spread.floor, spread.mean) == (4.0, 0.0, 2.0)
    assert Spread.of([4.0, 2.0], depth=3, size=2).floor == 2.0  # no other rows to pad with
    assert Spread.of([], depth=3, size=0) == Spread(0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(("how", "expected"), [
    ("minmax", [1.0, 0.5, 0.0, -0.5]),
    ("zscore", [1.5, 0.0, -1.5, -3.0]),
    ("dbsf", [0.75, 0.5, 0.25, 0.0]),
])
def test_normalizations_hand_computed(how: str, expected: list[float]) -> None:
    spread = Spread(top=3.0, floor=1.0, mean=2.0, std=2 / 3)
    result = spread.normalize(np.array([3.0, 2.0, 1.0, 0.0]), how)  # type: ignore[arg-type]
    assert result.tolist() == pytest.approx(expected)


def test_dbsf_clips_to_the_unit_interval() -> None:
    spread = Spread(top=3.0, floor=1.0, mean=2.0, std=0.1)
    assert spread.normalize(np.array([9.0, -9.0]), "dbsf").tolist() == [1.0, 0.0]


@pytest.mark.parametrize("how", ["minmax", "zscore", "dbsf"])
def test_a_flat_spread_is_a_step_at_the_top(how: str) -> None:
    spread = Spread.of([2.0, 2.0, 2.0], depth=3)
    assert spread.normalize(np.array([2.0, 1.0]), how).tolist() == [1.0, 0.0]  # type: ignore[arg-type]
    assert spread.confidence == 0.0


def test_combine_weights_and_adapts_to_the_more_confident_retriever() -> None:
    dense, lexical = Spread.of([1.0, 0.0, 0.0, 0.0], 4), Spread.of([5.0, 5.0, 5.0, 5.0], 4)
    d, lex = np.array([1.0, 0.0]), np.array([5.0, 5.0])
    fixed = combine(d, lex, (dense, lexical), "minmax", 0.25)
    assert fixed.tolist() == pytest.approx([0.25 + 0.75, 0.75])
    # the flat lexical list stands for nothing: the adaptive weight goes all to dense
    assert dense.confidence == pytest.approx(math.sqrt(3))
    assert combine(d, lex, (dense, lexical), "minmax", None).tolist() == pytest.approx([1.0, 0.0])


@given(st.lists(st.floats(-50, 50), min_size=2, max_size=30), st.integers(1, 40))
def test_normalization_never_reverses_an_order(scores: list[float], depth: int) -> None:
    spread = Spread.of(sorted(scores, reverse=True), depth)
    values = np.array(sorted(scores))
    for how in ("minmax", "zscore", "dbsf"):
        normalized = spread.normalize(values, how)  # type: ignore[arg-type]
        assert np.all(np.diff(normalized) >= 0)
