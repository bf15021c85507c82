"""The recommendations page's list controls as pure data (frontend/movierecs_web/controls.py).

The frontend is not an installed package (it runs from its own venv), but controls.py and
posters.py import neither Reflex nor requests, so they are loaded here from the folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "frontend"))

from movierecs_web import controls  # noqa: E402
from movierecs_web.controls import Filters  # noqa: E402


def test_a_chip_cycles_any_include_exclude_any():
    mode = "any"
    seen = []
    for _ in range(3):
        mode = controls.next_mode(mode)
        seen.append(mode)
    assert seen == ["include", "exclude", "any"]
    assert controls.next_mode("bogus") == "include"


def test_chip_label_says_state_and_next_step():
    assert controls.chip_label("Comedy", "exclude") == "Comedy: excluded (click to clear)"
    assert controls.chip_label("Sci-Fi", "any").startswith("Sci-Fi: any")


def test_untouched_controls_send_no_parameters():
    f = controls.build_filters({}, "", " ", "0")
    assert f == controls.NO_FILTERS
    assert f.params() == {}
    assert not f.filtering


def test_controls_become_api_parameters_in_movielens_order():
    modes = {"Western": "include", "Action": "include", "Comedy": "exclude", "Drama": "any"}
    f = controls.build_filters(modes, "1980", "1999", "0.3")
    assert f.params() == {"include_genres": "Action,Western", "exclude_genres": "Comedy",
                          "year_min": "1980", "year_max": "1999", "diversity": "0.3"}
    assert f.filtering


def test_diversity_alone_reorders_but_does_not_filter():
    f = controls.build_filters({}, "", "", "1")
    assert f.params() == {"diversity": "1"}
    assert not f.filtering  # so an answer without `exhausted` is not read as "only N match"


def test_exclude_ids_are_sent_comma_separated():
    assert Filters(exclude=(3, 1, 2)).params() == {"exclude": "3,1,2"}


@pytest.mark.parametrize("text", ["1799", "2101", "19x0", "１９９０", "-1990", "1990.5"])
def test_bad_years_say_what_to_type(text):
    with pytest.raises(ValueError, match="from 1800 to 2100"):
        controls.parse_year(text, "From")


def test_year_range_the_wrong_way_round_is_refused():
    with pytest.raises(ValueError, match="after To year"):
        controls.build_filters({}, "2000", "1990", "0")


@pytest.mark.parametrize("text,value", [("0", 0.0), ("0.5", 0.5), ("1", 1.0), ("0.30000000000000004", 0.3),
                                        ("", 0.0)])
def test_diversity_is_rounded_to_the_slider_step(text, value):
    assert controls.parse_diversity(text) == value


@pytest.mark.parametrize("text", ["-0.1", "1.5", "lots", "nan"])
def test_bad_diversity_is_refused(text):
    with pytest.raises(ValueError, match="from 0 to 1"):
        controls.parse_diversity(text)


def test_join_titles():
    assert controls.join_titles([]) == ""
    assert controls.join_titles(["Alien"]) == "Alien"
    assert controls.join_titles(["Alien", "The Terminator"]) == "Alien and The Terminator"
    assert controls.join_titles(["A", "B", "C"]) == "A, B and C"


def test_reasons_in_plain_words_with_display_titles():
    liked = [{"kind": "liked", "movie_id": 1214, "title": "Alien (1979)", "share": 0.3},
             {"kind": "liked", "movie_id": 1240, "title": "Terminator, The (1984)", "share": 0.2}]
    assert controls.reasons_text(liked) == "Because you liked Alien and The Terminator"
    mixed = [{"kind": "rated", "movie_id": 592, "title": "Beauty and the Beast (1991)", "share": 0.108},
             {"kind": "liked", "movie_id": 1, "title": "Toy Story (1995)", "share": 0.059}]
    assert controls.reasons_text(mixed) == "Because you rated Beauty and the Beast and liked Toy Story"
    two_then_one = [{"kind": "rated", "title": "A (1990)"}, {"kind": "rated", "title": "B (1991)"},
                    {"kind": "liked", "title": "C (1992)"}]
    assert controls.reasons_text(two_then_one) == "Because you rated A and B, and liked C"


def test_popular_similar_and_empty_reasons():
    assert controls.reasons_text([{"kind": "popular", "share": 1.0}]) == "Popular with everyone"
    similar = [{"kind": "similar", "movie_id": 1, "title": "Toy Story (1995)", "share": 1.0}]
    assert controls.reasons_text(similar) == "Similar to Toy Story"
    assert controls.reasons_text([]) == ""
    assert controls.reasons_text([{"kind": "liked", "movie_id": 7}]) == "Because you liked movie 7"


def test_reasons_detail_and_ids():
    reasons = [{"kind": "rated", "movie_id": 592, "title": "Beauty and the Beast (1991)", "share": 0.108},
               {"kind": "liked", "movie_id": 1, "title": "Toy Story (1995)", "share": 0.059},
               {"kind": "popular", "share": 1.0}]
    assert controls.reasons_detail(reasons) == "Share of the score: Beauty and the Beast 11% · Toy Story 6%"
    assert controls.reason_ids(reasons) == [592, 1]
    assert controls.reasons_detail([{"kind": "popular", "share": 1.0}]) == ""


def test_cursor_errors_reload_page_one_with_a_notice():
    assert "newer model" in controls.cursor_notice("cursor_stale")
    assert controls.cursor_notice("cursor_mismatch")
    assert controls.cursor_notice("cursor_malformed")
    assert controls.cursor_notice(None) is None
    assert controls.cursor_notice("something_else") is None


def test_exhausted_text():
    assert controls.exhausted_text(0) == "No movie matches these filters."
    assert controls.exhausted_text(1) == "Only 1 movie matches these filters."
    assert controls.exhausted_text(7) == "Only 7 movies match these filters."


def test_new_ids_keeps_order_and_drops_what_is_shown():
    assert controls.new_ids([1, 2, 3], [3, 4, 2, 5, 4]) == [4, 5]
