"""MovieLens: the offline ML-100K conversion and the .dat reader on a hand-written ML-1M-style folder."""
from __future__ import annotations

import pytest

from movierecs_training import data


def test_ml100k_is_converted_to_the_dat_layout():
    folder = data.fetch("ml-100k")
    assert data.is_fetched("ml-100k")
    ml = data.read_movielens(folder)
    assert len(ml.ratings) == 100_000 and len(ml.movies) == 1_682 and len(ml.users) == 943
    assert ml.ratings["rating"].between(1, 5).all()
    assert ml.ratings["ts"].dt.tz is not None
    toy = ml.movies.set_index("movie_id").loc[1]
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert set(ml.users.columns) == {"user_id", "gender", "age", "occupation", "zip"}
    assert ml.users["occupation"].between(0, 20).all()
    assert data.fetch("ml-100k") == folder  # idempotent: already there


def test_a_users_own_ml1m_files_are_read(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n", encoding="latin-1")
    (tmp_path / "movies.dat").write_text(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Sci-Fi\n"
        "3::Misérables, Les (1995)::Drama|Musical\n", encoding="latin-1")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n", encoding="latin-1")
    ml = data.read_movielens(tmp_path)
    assert ml.ratings[["user_id", "movie_id", "rating"]].values.tolist() == [[1, 1193, 5], [1, 661, 3], [2, 1193, 4]]
    assert str(ml.ratings["ts"].iloc[0]) == "2000-12-31 22:12:40+00:00"
    m = ml.movies.set_index("movie_id")
    assert m.loc[661, "title"] == "Star Wars: Episode IV - A New Hope (1977)" and m.loc[661, "genres"] == ["Action", "Adventure", "Sci-Fi"]
    assert m.loc[3, "title"] == "Misérables, Les (1995)" and m.loc[3, "year"] == 1995
    assert ml.users["zip"].tolist() == ["48067", "70072"]


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch"):
        data.read_movielens(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.fetch("ml-25m")


def test_year_is_parsed_from_the_title():
    assert data.parse_title_year("Heat (1995)") == 1995
    assert data.parse_title_year("City of Lost Children, The (1995) ") == 1995
    assert data.parse_title_year("unknown") is None
