"""Shared UI pieces: navigation bar, poster, movie card, page shell."""
from __future__ import annotations

import reflex as rx

from .state import Movie


def nav_link(text: str, href: str, icon: str) -> rx.Component:
    return rx.link(
        rx.hstack(rx.icon(icon, size=16),
                  rx.text(text, size="2", weight="medium", display=["none", "block"]),
                  spacing="2", align="center"),
        href=href, aria_label=text, title=text, underline="none", color_scheme="gray", high_contrast=True,
        padding_x="0.75em", padding_y="0.4em", border_radius="8px",
        _hover={"background": rx.color("gray", 4)},
    )


def navbar() -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.link(
                rx.hstack(rx.icon("clapperboard", size=22, color=rx.color("accent", 10)),
                          rx.heading("MovieRecs", size="5", weight="bold"), spacing="2",
                          align="center"),
                href="/", underline="none", high_contrast=True,
            ),
            rx.spacer(),
            rx.hstack(nav_link("Recommendations", "/", "sparkles"),
                      nav_link("Ops", "/ops", "activity"), spacing="1"),
            align="center", width="100%", max_width="1200px", margin_x="auto",
            padding_x="1em", padding_y="0.75em",
        ),
        as_="nav", aria_label="Main", position="sticky", top="0", z_index="10",
        background=rx.color("gray", 1, alpha=True), backdrop_filter="blur(10px)",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def shell(*children: rx.Component) -> rx.Component:
    return rx.box(
        navbar(),
        rx.box(*children, as_="main", max_width="1200px", margin_x="auto",
               padding_x=["0.75em", "1em", "1.5em"], padding_y="1.25em"),
        min_height="100vh",
    )


def poster(m: Movie, height=("150px", "190px")) -> rx.Component:
    return rx.box(
        rx.text(m.initials, font_size="2.6em", font_weight="800", letter_spacing="-0.04em",
                color="rgba(255,255,255,0.92)", text_shadow="0 2px 12px rgba(0,0,0,0.35)"),
        rx.text(m.year, position="absolute", bottom="8px", right="10px", size="1",
                weight="bold", color="rgba(255,255,255,0.85)"),
        rx.icon("film", size=14, color="rgba(255,255,255,0.7)", position="absolute",
                top="9px", left="10px"),
        background=m.poster, height=list(height), width="100%", display="flex",
        align_items="center", justify_content="center", position="relative",
        role="img", aria_label=m.title + " poster",
    )


def like_button(m: Movie, on_like) -> rx.Component:
    return rx.button(
        rx.icon("heart", size=15, fill=rx.cond(m.liked, "currentColor", "none")),
        rx.cond(m.liked, rx.cond(m.pending, "Liking…", "Liked"), "Like"),
        on_click=on_like(m.movie_id),
        variant=rx.cond(m.liked, "solid", "soft"),
        color_scheme=rx.cond(m.liked, "ruby", "gray"),
        size="2", width="100%",
        aria_label=rx.cond(m.liked, "Liked " + m.title, "Like " + m.title),
        aria_pressed=rx.cond(m.liked, "true", "false"),
        class_name="like-button",
        data_liked=rx.cond(m.liked, "true", "false"),
    )


def feedback_buttons(m: Movie, on_unlike, on_not_interested) -> rx.Component:
    """Under the like button: "Undo" once liked, "Not for me" before (issue 12)."""
    return rx.cond(
        m.liked,
        rx.cond(m.pending, rx.fragment(),
                rx.button(rx.icon("undo-2", size=13), "Undo", on_click=on_unlike(m.movie_id), variant="ghost",
                          color_scheme="gray", size="1", width="100%", aria_label="Undo the like of " + m.title,
                          class_name="undo-button")),
        rx.button(rx.icon("eye-off", size=13), "Not for me", on_click=on_not_interested(m.movie_id), variant="ghost",
                  color_scheme="gray", size="1", width="100%", aria_label="Not for me: " + m.title,
                  class_name="not-interested-button"),
    )


def reasons_line(m: Movie) -> rx.Component:
    """Why the movie is on the list, in words; the shares are in the tooltip."""
    return rx.cond(
        m.reasons != "",
        rx.text(m.reasons, size="1", color_scheme="gray", title=m.reasons_detail,
                class_name="reasons", data_reason_ids=m.reason_ids, font_style="italic",
                style={"display": "-webkit-box", "-webkit-line-clamp": "3",
                       "-webkit-box-orient": "vertical", "overflow": "hidden"}),
    )


def movie_card(m: Movie, on_like, poster_height=("150px", "190px"),
               show_reasons: bool = False, on_unlike=None, on_not_interested=None) -> rx.Component:
    return rx.card(
        rx.inset(poster(m, poster_height), side="top", pb="current"),
        rx.vstack(
            rx.text(m.title, size="2", weight="bold", trim="both", line_clamp=2,
                    title=m.full_title, class_name="movie-title"),
            rx.text(m.genres, size="1", color_scheme="gray", line_clamp=1, class_name="movie-genres"),
            *([reasons_line(m)] if show_reasons else []),
            rx.box(like_button(m, on_like), margin_top="auto", width="100%"),
            *([feedback_buttons(m, on_unlike, on_not_interested)] if on_unlike is not None else []),
            spacing="2", padding_top="0.6em", flex_grow="1",
        ),
        class_name="movie-card", data_movie_id=m.movie_id.to_string(),
        display="flex", flex_direction="column",
        style={"transition": "transform 120ms ease", "_hover": {"transform": "translateY(-2px)"}},
    )


def section_title(text, icon: str) -> rx.Component:
    return rx.hstack(rx.icon(icon, size=18, color=rx.color("accent", 10)),
                     rx.heading(text, size="4", weight="bold"), spacing="2", align="center")
