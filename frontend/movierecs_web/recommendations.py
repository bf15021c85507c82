"""The recommendations page: pick a user, get a list, like movies, see similar ones."""
from __future__ import annotations

import reflex as rx

from .components import movie_card, section_title, shell
from .filters_panel import filters_card, list_notes, load_more
from .state import EXAMPLE_USERS, Like, RecState


def user_form() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.box(
                rx.text("User id", as_="label", html_for="user_id", size="2", weight="medium"),
                rx.input(id="user_id", name="user_id", value=RecState.user_id_text,
                         on_change=RecState.set_user_id_text, input_mode="numeric",
                         placeholder="e.g. 42", size="3", aria_label="User id", width="100%"),
                flex="1 1 140px",
            ),
            rx.box(
                rx.text("How many", as_="label", html_for="k", size="2", weight="medium"),
                rx.input(id="k", name="k", value=RecState.k_text, on_change=RecState.set_k_text,
                         type="number", min=1, max=100, size="3",
                         aria_label="Number of recommendations", width="100%"),
                flex="0 1 110px",
            ),
            rx.button(rx.icon("sparkles", size=16), "Get recommendations", type="submit",
                      size="3", loading=RecState.loading, id="get-recs",
                      aria_label="Get recommendations", flex_shrink="0"),
            gap="0.75em", align="end", wrap="wrap", width="100%",
        ),
        on_submit=RecState.submit, reset_on_submit=False, width="100%",
    )


def example_users() -> rx.Component:
    return rx.flex(
        rx.text("Try:", size="2", color_scheme="gray"),
        *[rx.button(f"User {u}", on_click=RecState.pick_user(u), variant="soft",
                    color_scheme="gray", size="1", aria_label=f"Recommendations for user {u}")
          for u in EXAMPLE_USERS],
        rx.button(rx.icon("user-plus", size=14), "New user", on_click=RecState.new_user,
                  variant="soft", size="1", id="new-user",
                  aria_label="New user: a fresh random id above 100000"),
        gap="0.5em", align="center", wrap="wrap",
    )


def strategy_banner() -> rx.Component:
    return rx.cond(
        RecState.strategy != "",
        rx.flex(
            rx.badge(RecState.strategy, color_scheme=RecState.strategy_color, size="3",
                     variant="solid", id="strategy", data_strategy=RecState.strategy),
            rx.text(RecState.strategy_text, size="2", color_scheme="gray"),
            rx.spacer(),
            rx.text("model ", rx.code(RecState.model_version, id="model-version", size="1"),
                    size="1", color_scheme="gray"),
            gap="0.75em", align="center", wrap="wrap", width="100%",
        ),
    )


def skeleton_grid() -> rx.Component:
    return rx.grid(
        *[rx.skeleton(rx.box(height="300px", border_radius="12px"), loading=True)
          for _ in range(8)],
        columns=rx.breakpoints(initial="2", sm="3", md="4", lg="5"), spacing="4", width="100%",
    )


def recs_grid() -> rx.Component:
    return rx.grid(
        rx.foreach(RecState.items, lambda m: movie_card(m, RecState.like, show_reasons=True,
                                                        on_unlike=RecState.unlike,
                                                        on_not_interested=RecState.not_interested)),
        columns=rx.breakpoints(initial="2", sm="3", md="4", lg="5"), spacing="4", width="100%",
        id="recs-grid",
    )


def empty_state() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon("popcorn", size=44, color=rx.color("accent", 9)),
            rx.heading("Pick a user to see their recommendations", size="4"),
            rx.text("Try an example user, or start a new user and like a few movies: the list "
                    "turns from popular to personal.", size="2", color_scheme="gray",
                    text_align="center", max_width="32em"),
            align="center", spacing="3",
        ),
        padding_y="4em", width="100%",
    )


def like_row(x: Like) -> rx.Component:
    return rx.hstack(
        rx.icon("heart", size=14, color=rx.color("ruby", 9), fill=rx.color("ruby", 9)),
        rx.text(x.title, size="2", weight="medium", line_clamp=1, flex="1"),
        rx.text(x.when, size="1", color_scheme="gray", white_space="nowrap"),
        rx.icon_button(rx.icon("x", size=12), on_click=RecState.unlike(x.movie_id), variant="ghost",
                       color_scheme="gray", size="1", aria_label="Remove the like of " + x.title,
                       title="Remove this like", class_name="remove-like"),
        width="100%", align="center", spacing="2", padding_y="0.35em",
        border_bottom=f"1px solid {rx.color('gray', 3)}", class_name="like-row", data_movie_id=x.movie_id.to_string(),
    )


def side_panel() -> rx.Component:
    return rx.vstack(
        rx.card(
            rx.vstack(
                section_title("Recent likes", "heart"),
                rx.cond(
                    RecState.likes.length() > 0,
                    rx.vstack(rx.foreach(RecState.likes, like_row), width="100%", spacing="0",
                              id="recent-likes"),
                    rx.text("No likes yet for this user.", size="2", color_scheme="gray"),
                ),
                spacing="3", width="100%",
            ),
            width="100%",
        ),
        rx.cond(RecState.side_error != "",
                rx.callout(RecState.side_error, icon="triangle-alert", color_scheme="orange",
                           size="1", width="100%")),
        width="100%", spacing="3",
    )


def similar_section() -> rx.Component:
    return rx.cond(
        RecState.similar.length() > 0,
        rx.vstack(
            section_title(rx.fragment("Because you liked “", RecState.similar_to, "”"), "wand"),
            rx.grid(
                rx.foreach(RecState.similar, lambda m: movie_card(m, RecState.like, ("110px", "130px"))),
                columns=rx.breakpoints(initial="2", sm="3", md="6"), spacing="3", width="100%",
                id="similar-grid",
            ),
            spacing="3", width="100%", padding_top="1.5em",
        ),
    )


def page() -> rx.Component:
    return shell(
        rx.vstack(
            rx.vstack(
                rx.heading("Recommendations", size="7", weight="bold"),
                rx.text("Movies picked for a user by the current model, served through the "
                        "MovieRecs API.", size="2", color_scheme="gray"),
                spacing="1",
            ),
            rx.card(rx.vstack(user_form(), example_users(), spacing="3", width="100%"),
                    width="100%", size="2"),
            filters_card(),
            rx.cond(RecState.error != "",
                    rx.callout(RecState.error, icon="circle-alert", color_scheme="red",
                               role="alert", width="100%", id="error")),
            strategy_banner(),
            list_notes(),
            rx.flex(
                rx.box(
                    rx.cond(RecState.loading & (RecState.items.length() == 0), skeleton_grid(),
                            rx.cond(RecState.items.length() > 0, recs_grid(),
                                    rx.cond(RecState.exhausted, rx.fragment(), empty_state()))),
                    load_more(),
                    similar_section(),
                    flex="1 1 600px", min_width="0",
                ),
                rx.cond(RecState.user_id > 0,
                        rx.box(side_panel(), flex=["1 1 100%", "1 1 100%", "0 1 300px"], width="100%")),
                gap="1.5em", wrap="wrap", width="100%", align="start",
            ),
            spacing="4", width="100%", id="recs-root", data_fetches=RecState.fetches.to_string(),
            data_loading=rx.cond(RecState.loading, "true", "false"),
            data_ready=rx.cond(RecState.ready, "true", "false"),
        ),
    )
