"""Recommender rules on a tiny hand-made model: strategies, exclusions, no repeats, bad k."""
from __future__ import annotations

import numpy as np
import pytest

from movierecs_serving import ModelArtifact, Recommender, UnknownItemError
from test_serving_artifact import tiny


@pytest.fixture()
def rec(tmp_path):
    return Recommender(ModelArtifact.load(tiny(tmp_path)))


def ids(r):
    return [m for m, _ in r.items]


def test_known_user_is_personal_and_never_gets_training_items(rec):
    r = rec.recommend(10, 10)  # user 10 rated items 101 and 103
    assert r.strategy == "personal" and r.model_version == rec.artifact.version
    assert set(ids(r)) == {102, 104, 105, 106} and len(ids(r)) == 4
    scores = [s for _, s in r.items]
    assert scores == sorted(scores, reverse=True)


def test_liked_and_excluded_items_are_never_recommended(rec):
    r = rec.recommend(10, 10, liked=[102], exclude=[104])
    assert set(ids(r)) == {105, 106}


def test_personal_scores_are_the_dot_product(rec):
    a = rec.artifact
    r = rec.recommend(30, 2)  # user 30 (row 2) has no training items
    s = a.item_factors @ a.user_factors[2]
    best = np.argsort(-s)[:2]
    assert ids(r) == a.item_ids[best].tolist()


def test_unknown_user_with_likes_is_folded_in_and_without_is_popular(rec):
    r = rec.recommend(999, 3, liked=[101, 999999])  # an unknown movie id is ignored
    assert r.strategy == "fold_in" and 101 not in ids(r) and len(ids(r)) == 3
    p = rec.recommend(999, 3)
    assert p.strategy == "popular" and ids(p) == [103, 101, 102]
    p2 = rec.recommend(999, 3, liked=[999999], exclude=[103])
    assert p2.strategy == "popular" and ids(p2) == [101, 102, 104]


def test_k_must_be_a_positive_integer(rec):
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError):
            rec.recommend(10, bad)


def test_similar_uses_cosine_and_leaves_the_movie_out(rec):
    a = rec.artifact
    sim = rec.similar(101, 5)
    assert 101 not in ids_of(sim) and len(sim) == 5
    y = a.item_factors / np.linalg.norm(a.item_factors, axis=1, keepdims=True)
    expected = [m for m in a.item_ids[np.argsort(-(y @ y[0]))].tolist() if m != 101][:5]
    assert ids_of(sim) == expected
    with pytest.raises(UnknownItemError):
        rec.similar(4242, 5)


def ids_of(items):
    return [m for m, _ in items]


def test_explain_terms_add_up_to_the_score_of_the_history_solved_vector(rec):
    r = rec.recommend(10**6, 5, liked=[int(m) for m in rec.artifact.item_ids[:4]])
    assert r.strategy == "fold_in" and r.basis is not None
    vec = rec.fold_in_vector(r.basis.rows, r.basis.weights)
    explained = rec.explain(r.basis, [m for m, _ in r.items])
    for (movie, served), e in zip(r.items, explained):
        assert e.movie_id == movie
        assert abs(sum(t for _, t in e.terms) - e.score) < 1e-9
        assert abs(e.score - served) < 1e-4 * max(1.0, abs(served))  # fold-in serves this very vector
        assert {m for m, _ in e.terms} == {int(m) for m in rec.artifact.item_ids[:4]}
        assert [t for _, t in e.terms] == sorted((t for _, t in e.terms), reverse=True)
    assert abs(explained[0].score - float(rec.scores(vec)[rec._item_row[r.items[0][0]]])) < 1e-4


def test_diversify_keeps_k_distinct_items_and_zero_is_the_ranking(rec):
    items = rec.similar(int(rec.artifact.item_ids[0]), 12)
    assert rec.diversify(items, 5, 0.0) == items[:5]
    spread = rec.diversify(items, 5, 1.0)
    assert len({m for m, _ in spread}) == 5 and spread[0] == items[0]
    shown = [m for m, _ in items[:3]]
    assert not {m for m, _ in rec.diversify(items[3:], 4, 0.5, context=shown)} & set(shown)
