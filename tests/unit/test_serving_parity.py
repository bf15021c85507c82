"""The numpy serving library answers what rectools/implicit answer on the same model (ML-100K)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from movierecs_serving import ModelArtifact, Recommender
from movierecs_training import data, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ml = data.load_dataset("ml-100k")
    df = train.ratings_to_interactions(ml.ratings)
    fitted = train.fit(df, {"factors": 32, "iterations": 10})
    folder = train.write_model(fitted, df, tmp_path_factory.mktemp("models"))
    return fitted, Recommender(ModelArtifact.load(folder))


def test_top10_equals_rectools_for_a_sample_of_users(trained):
    fitted, rec = trained
    users = np.random.default_rng(0).choice(fitted.dataset.user_id_map.external_ids, 60, replace=False)
    reco = fitted.als.recommend(users, fitted.dataset, k=10, filter_viewed=True)
    for u in users:
        expected = reco[reco["user_id"] == u].sort_values("rank")["item_id"].tolist()
        got = rec.recommend(int(u), 10)
        assert got.strategy == "personal"
        assert [m for m, _ in got.items] == expected, u


def test_popular_equals_rectools_popular_with_viewed_filtered(trained):
    fitted, rec = trained
    users = fitted.dataset.user_id_map.external_ids[:20]
    reco = fitted.popular.recommend(users, fitted.dataset, k=10, filter_viewed=True)
    for u in users:
        expected = reco[reco["user_id"] == u].sort_values("rank")["item_id"].tolist()
        banned = {rec._item_row[m] for m in rec.seen_items(int(u))}
        assert [m for m, _ in rec.popular(10, banned)] == expected
    cold = rec.recommend(10**9, 10)
    assert cold.strategy == "popular"
    assert [m for m, _ in cold.items] == fitted.dataset.item_id_map.external_ids[fitted.popular.popularity_list[0][:10]].tolist()


def test_fold_in_matches_implicit_recalculate_user(trained):
    fitted, rec = trained
    model = fitted.als.model
    ui = fitted.dataset.get_user_item_matrix(include_weights=True).tocsr().astype(np.float32)
    for row in (0, 5, 100):
        expected = model.recalculate_user(row, ui[row])
        got = rec.fold_in_vector(ui[row].indices, ui[row].data)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    # a brand-new user who liked three movies
    cols = np.array([0, 7, 42])
    row = sp.csr_matrix((np.ones(3, np.float32), (np.zeros(3, int), cols)), shape=(1, ui.shape[1]))
    expected = model.recalculate_user(0, row)
    got = rec.fold_in_vector(cols, np.ones(3, np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_new_users_likes_give_a_personal_list_that_excludes_them(trained):
    _, rec = trained
    liked = [int(m) for m in rec.artifact.item_ids[[3, 9, 27]]]
    r = rec.recommend(10**9, 10, liked=liked)
    assert r.strategy == "fold_in"
    ids = [m for m, _ in r.items]
    assert len(ids) == 10 and len(set(ids)) == 10 and not set(ids) & set(liked)
    assert ids != [m for m, _ in rec.recommend(10**9 + 1, 10).items]


def test_a_known_users_fresh_likes_change_their_list(trained):
    _, rec = trained
    user = int(rec.artifact.user_ids[3])
    before = [m for m, _ in rec.recommend(user, 10).items]
    seen = set(rec.seen_items(user))
    fresh = [m for m in rec.artifact.item_ids[::-1].tolist() if m not in seen][:5]
    after = rec.recommend(user, 10, liked=fresh)
    assert after.strategy == "personal"
    ids = [m for m, _ in after.items]
    assert ids != before
    assert not set(ids) & (seen | set(fresh))
