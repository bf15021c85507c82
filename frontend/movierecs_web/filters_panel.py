"""The list controls on the recommendations page: genre chips, year range, diversity, Load more.

Each control reloads the first page when it changes (RecState's handlers); the chips say
their state in words (aria-label) and not only in colour.
"""
from __future__ import annotations

import reflex as rx

from .state import GenreChip, RecState


def genre_chip(chip: GenreChip) -> rx.Component:
    return rx.button(
        rx.match(chip.mode,
                 ("include", rx.icon("plus", size=12)),
                 ("exclude", rx.icon("ban", size=12)),
                 rx.fragment()),
        rx.text(chip.genre, as_="span",
                text_decoration=rx.cond(chip.mode == "exclude", "line-through", "none")),
        on_click=RecState.cycle_genre(chip.genre),
        type="button", size="1", radius="full",
        variant=rx.match(chip.mode, ("include", "solid"), ("exclude", "solid"), "outline"),
        color_scheme=rx.match(chip.mode, ("include", "grass"), ("exclude", "tomato"), "gray"),
        aria_label=chip.label, title=chip.label, class_name="genre-chip",
        data_genre=chip.genre, data_mode=chip.mode,
    )


def genre_chips() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text("Genres", size="2", weight="medium", id="genres-label"),
            rx.text("click once to include, twice to exclude, again to clear", size="1",
                    color_scheme="gray"),
            spacing="2", align="baseline", wrap="wrap",
        ),
        rx.flex(rx.foreach(RecState.chips, genre_chip), gap="0.4em", wrap="wrap",
                role="group", aria_labelledby="genres-label", id="genre-chips"),
        spacing="2", width="100%",
    )


def year_input(id_: str, label: str, value, on_change, on_blur, placeholder: str) -> rx.Component:
    return rx.box(
        rx.text(label, as_="label", html_for=id_, size="2", weight="medium"),
        rx.input(id=id_, name=id_, value=value, on_change=on_change, on_blur=on_blur,
                 type="number", min=1800, max=2100, placeholder=placeholder, size="2",
                 aria_label=f"{label} year", width="100%"),
        flex="0 1 100px",
    )


def year_range() -> rx.Component:
    # A form of its own, so Enter in a year field applies the range.
    return rx.form(
        rx.flex(
            year_input("year_min", "From", RecState.year_min_text, RecState.set_year_min_text,
                       RecState.apply_year_min, "1919"),
            year_input("year_max", "To", RecState.year_max_text, RecState.set_year_max_text,
                       RecState.apply_year_max, "2000"),
            # Two fields and no submit button would not submit on Enter (HTML implicit submission).
            rx.button("Apply", type="submit", size="2", variant="soft", id="apply-years",
                      aria_label="Apply the year range"),
            gap="0.5em", align="end",
        ),
        on_submit=RecState.apply_years_form, reset_on_submit=False, flex="0 0 auto",
    )


def diversity_slider() -> rx.Component:
    # A native range input: keyboard and screen readers know it, and its <label> names it.
    # Debounced, so a drag reloads once, when it settles.
    return rx.box(
        rx.hstack(
            rx.text("Diversity", as_="label", html_for="diversity", size="2", weight="medium"),
            rx.code(RecState.diversity_label, size="1", id="diversity-value"),
            spacing="2", align="center",
        ),
        rx.debounce_input(
            rx.el.input(id="diversity", type="range", min=0, max=1, step=0.1,
                        value=RecState.diversity_text, on_change=RecState.set_diversity,
                        aria_label="Diversity: 0 most relevant, 1 most varied",
                        style={"width": "100%", "accent_color": rx.color("accent", 9)}),
            debounce_timeout=350,
        ),
        rx.flex(rx.text("relevant", size="1", color_scheme="gray"), rx.spacer(),
                rx.text("varied", size="1", color_scheme="gray"), width="100%"),
        flex="1 1 180px", min_width="160px",
    )


def filters_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            genre_chips(),
            rx.flex(
                year_range(),
                diversity_slider(),
                rx.button(rx.icon("x", size=14), "Clear filters", on_click=RecState.clear_filters,
                          type="button", variant="soft", color_scheme="gray", size="2",
                          disabled=~RecState.filters_active, id="clear-filters",
                          aria_label="Clear genre, year and diversity filters"),
                gap="1.25em", align="end", wrap="wrap", width="100%",
            ),
            spacing="3", width="100%",
        ),
        width="100%", size="2", id="filters",
    )


def list_notes() -> rx.Component:
    """The stale-cursor notice and "only N match these filters"."""
    return rx.fragment(
        rx.cond(RecState.notice != "",
                rx.callout(RecState.notice, icon="refresh-cw", color_scheme="blue", size="1",
                           role="status", width="100%", id="notice")),
        rx.cond(RecState.exhausted_text != "",
                rx.callout(RecState.exhausted_text, icon="filter", color_scheme="amber", size="1",
                           role="status", width="100%", id="exhausted")),
    )


def load_more() -> rx.Component:
    return rx.cond(
        (RecState.next_cursor != "") & (RecState.items.length() > 0),
        rx.center(
            rx.button(rx.icon("chevrons-down", size=16), "Load more", on_click=RecState.load_more,
                      loading=RecState.loading_more, disabled=RecState.loading, size="3",
                      variant="soft", id="load-more", aria_label="Load more recommendations"),
            width="100%", padding_top="1em",
        ),
    )
