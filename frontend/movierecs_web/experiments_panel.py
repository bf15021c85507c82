"""The ops page's online parts (issue 13): the like-rate per model version over time and the
experiments panel (the running experiment, stop it by hand, the past ones, start one).

Kept out of ops.py so that page stays a list of sections; the numbers and wording come
from online.py through OpsState, so this file only lays them out.
"""
from __future__ import annotations

import reflex as rx

from .components import section_title
from .ops_state import Arm, Experiment, OnlineRow, OnlineSeries, OpsState

CHART_H = 260


# --------------------------------------------------------------------------- like-rate
def _band(s: OnlineSeries) -> rx.Component:
    # A range area ([lo, hi] per hour): the 95 % interval as a band; the tooltip shows "lo ~ hi %".
    return rx.recharts.area(data_key=s.band, name=s.version + " 95 %", stroke="none", fill=s.fill,
                            legend_type="none", type_="monotone", connect_nulls=True,
                            active_dot=False, unit=" %", is_animation_active=False,
                            class_name="online-band")


def _line(s: OnlineSeries) -> rx.Component:
    return rx.recharts.line(data_key=s.key, name=s.version, stroke=s.color, stroke_width=2,
                            dot={"r": 3}, connect_nulls=True, type_="monotone", unit=" %",
                            is_animation_active=False, class_name="online-line")


def like_rate_chart() -> rx.Component:
    chart = rx.recharts.composed_chart(
        rx.recharts.cartesian_grid(stroke_dasharray="3 3", stroke=rx.color("gray", 5)),
        rx.recharts.x_axis(data_key="hour", tick={"fontSize": 11}, min_tick_gap=24),
        rx.recharts.y_axis(tick={"fontSize": 11}, width=48, unit=" %"),
        rx.recharts.graphing_tooltip(),
        rx.recharts.legend(),
        rx.foreach(OpsState.online_series, _band),
        rx.foreach(OpsState.online_series, _line),
        data=OpsState.online_rows, width="100%", height=CHART_H,
    )
    return rx.vstack(
        rx.cond(OpsState.online_series.length() > 0, chart,
                rx.text("No lists were served in this window.", size="2", color_scheme="gray",
                        padding_y="1em")),
        width="100%", id="chart-online", class_name="chart-card",
        data_versions=OpsState.online_series.length().to_string(),
    )


def online_row(r: OnlineRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.hstack(
            rx.box(width="10px", height="10px", border_radius="50%", background=r.color,
                   flex_shrink="0", aria_hidden="true"),
            rx.code(r.version, size="1", white_space="nowrap"), spacing="2", align="center")),
        rx.table.cell(r.impressions, class_name="online-impressions"),
        rx.table.cell(r.converted, class_name="online-converted"),
        rx.table.cell(r.likes),
        rx.table.cell(rx.text(r.rate, weight="bold", white_space="nowrap"), class_name="online-rate"),
        rx.table.cell(rx.text(r.interval, white_space="nowrap"), class_name="online-interval"),
        rx.table.cell(rx.text(r.arms, size="1", color_scheme="gray")),
        class_name="online-row", data_version=r.version, align="center",
    )


def like_rate_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            section_title("Like-rate per model version", "heart-pulse"),
            rx.text("Share of served lists (impressions) with a like of a shown movie within ",
                    OpsState.like_window, ", per hour; the band and the tooltip give the 95 % "
                    "Wilson interval.", size="1", color_scheme="gray"),
            like_rate_chart(),
            rx.box(
                rx.table.root(
                    rx.table.header(rx.table.row(
                        *[rx.table.column_header_cell(h) for h in
                          ["Version", "Impressions", "Converted", "Likes", "Like-rate",
                           "95 % interval", "By arm"]])),
                    rx.table.body(rx.foreach(OpsState.online_table, online_row)),
                    size="1", width="100%", id="online-table",
                ),
                width="100%", overflow_x="auto",
            ),
            spacing="3", width="100%",
        ),
        width="100%",
    )


# --------------------------------------------------------------------------- experiments
def _figure(label: str, value, test_class: str) -> rx.Component:
    return rx.vstack(rx.text(label, size="1", color_scheme="gray"),
                     rx.text(value, size="2", weight="bold", class_name=test_class),
                     spacing="0", min_width="80px")


def arm_card(title: str, arm: Arm, arm_name: str) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(rx.badge(title, color_scheme=rx.cond(arm_name == "candidate", "iris", "gray"),
                               variant="soft"),
                      rx.code(arm.version, size="1", class_name="arm-version",
                              word_break="break-all"),
                      spacing="2", align="center", wrap="wrap"),
            rx.flex(
                _figure("Users", arm.users, "arm-users"),
                _figure("Impressions", arm.impressions, "arm-impressions"),
                _figure("Converted", arm.converted, "arm-converted"),
                _figure("Like-rate", arm.rate, "arm-rate"),
                _figure("95 % interval", arm.interval, "arm-interval"),
                _figure("Mean user rate", arm.user_rate, "arm-user-rate"),
                gap="0.75em", wrap="wrap",
            ),
            spacing="2", width="100%",
        ),
        class_name="arm-card", data_arm=arm_name, width="100%",
    )


def running_experiment() -> rx.Component:
    run: Experiment = OpsState.running
    return rx.vstack(
        rx.flex(
            rx.badge("running", color_scheme="amber", variant="solid"),
            rx.code(run.experiment_id, id="running-id", size="1"),
            rx.text("since ", run.created_at, " UTC · ", run.share, " of users in the candidate "
                    "arm · ends at ", run.min_impressions, " impressions or ", run.max_hours,
                    " h", size="1", color_scheme="gray"),
            gap="0.5em", align="center", wrap="wrap", width="100%",
        ),
        rx.grid(arm_card("Control", run.control, "control"),
                arm_card("Candidate", run.candidate, "candidate"),
                columns=rx.breakpoints(initial="1", md="2"), spacing="3", width="100%"),
        rx.flex(
            _figure("Difference (candidate − control)", run.difference, "exp-difference"),
            _figure(rx.text("Always-valid ", run.level, " interval", as_="span"), run.interval,
                    "exp-interval"),
            rx.vstack(
                rx.text("The rules now", size="1", color_scheme="gray"),
                rx.hstack(
                    rx.badge(run.rules_text, color_scheme=rx.match(
                        run.rules_decision, ("promote", "grass"), ("keep", "orange"), "gray"),
                        variant="soft", id="rules-decision", data_decision=run.rules_decision),
                    rx.text(run.rules_reason, size="1", id="rules-reason"),
                    spacing="2", align="center", wrap="wrap"),
                spacing="0",
            ),
            gap="1.25em", wrap="wrap", width="100%", align="start",
        ),
        rx.text("Test: ", run.test, ".", size="1", color_scheme="gray"),
        rx.flex(
            rx.button(rx.icon("trophy", size=14), "Promote candidate",
                      on_click=OpsState.ask_stop("promote"), loading=OpsState.stop_busy,
                      disabled=OpsState.stop_busy, color_scheme="grass", size="2",
                      id="exp-promote", aria_label="Promote the candidate and end the experiment"),
            rx.button(rx.icon("shield", size=14), "Keep control",
                      on_click=OpsState.ask_stop("keep"), loading=OpsState.stop_busy,
                      disabled=OpsState.stop_busy, color_scheme="orange", variant="soft",
                      size="2", id="exp-keep",
                      aria_label="Keep the control and end the experiment"),
            gap="0.75em", wrap="wrap",
        ),
        spacing="3", width="100%", id="running-experiment",
        data_experiment_id=run.experiment_id,
    )


def confirm_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(rx.cond(OpsState.confirm == "promote", "Promote the candidate?",
                                          "Keep the control?")),
            rx.alert_dialog.description(OpsState.confirm_text, size="2"),
            rx.flex(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray",
                                                 on_click=OpsState.cancel_stop,
                                                 id="confirm-cancel")),
                # A plain button, not alert_dialog.action: the handler closes the dialog itself
                # (it clears `confirm`), so no second event races the stop.
                rx.button(
                    rx.cond(OpsState.confirm == "promote", "Promote candidate", "Keep control"),
                    on_click=OpsState.stop_experiment, id="confirm-stop",
                    color_scheme=rx.cond(OpsState.confirm == "promote", "grass", "orange")),
                gap="0.75em", justify="end", margin_top="1em",
            ),
            id="confirm-dialog",
        ),
        open=OpsState.confirm != "",
        on_open_change=OpsState.confirm_open_change,
    )


def _labelled(label: str, field_id: str, control: rx.Component, flex: str) -> rx.Component:
    return rx.box(rx.text(label, as_="label", html_for=field_id, size="1", weight="medium"),
                  control, flex=flex)


def _version_select(field_id: str, name: str, value, on_change, label: str) -> rx.Component:
    return rx.el.select(
        rx.foreach(OpsState.version_choices, lambda v: rx.el.option(v, value=v)),
        id=field_id, name=name, value=value, on_change=on_change, aria_label=label,
        width="100%", height="32px", padding_x="0.5em", border_radius="var(--radius-2)",
        border=f"1px solid {rx.color('gray', 7)}", background=rx.color("gray", 1),
        color=rx.color("gray", 12), font_size="var(--font-size-1)",
        font_family="var(--code-font-family)",
    )


def start_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text("Start an experiment", size="2", weight="bold"),
            rx.flex(
                _labelled("Control", "exp-control", _version_select(
                    "exp-control", "form_control", OpsState.form_control,
                    OpsState.set_form_control, "Control version"), "1 1 220px"),
                _labelled("Candidate", "exp-candidate", _version_select(
                    "exp-candidate", "form_candidate", OpsState.form_candidate,
                    OpsState.set_form_candidate, "Candidate version"), "1 1 220px"),
                _labelled("Share in candidate (0..1)", "exp-share", rx.input(
                    id="exp-share", name="form_share", value=OpsState.form_share,
                    on_change=OpsState.set_form_share, input_mode="decimal", size="1",
                    aria_label="Share of users in the candidate arm, between 0 and 1"),
                    "0 1 150px"),
                _labelled("Min impressions", "exp-min", rx.input(
                    id="exp-min", name="form_min", value=OpsState.form_min,
                    on_change=OpsState.set_form_min, input_mode="numeric", size="1",
                    aria_label="Minimum impressions before the rules may decide"), "0 1 120px"),
                _labelled("Max hours", "exp-hours", rx.input(
                    id="exp-hours", name="form_hours", value=OpsState.form_hours,
                    on_change=OpsState.set_form_hours, input_mode="decimal", size="1",
                    aria_label="Maximum duration in hours"), "0 1 100px"),
                rx.button(rx.icon("flask-conical", size=14), "Start experiment", type="submit",
                          loading=OpsState.start_busy, size="2", id="exp-start",
                          aria_label="Start the experiment"),
                gap="0.75em", wrap="wrap", align="end", width="100%",
            ),
            rx.cond(OpsState.start_message != "",
                    rx.callout(OpsState.start_message,
                               icon=rx.cond(OpsState.start_ok, "info", "circle-alert"),
                               color_scheme=rx.cond(OpsState.start_ok, "grass", "red"),
                               role=rx.cond(OpsState.start_ok, "status", "alert"),
                               size="1", width="100%", id="start-result",
                               data_ok=rx.cond(OpsState.start_ok, "true", "false"))),
            spacing="2", width="100%",
        ),
        on_submit=OpsState.start_experiment, reset_on_submit=False, width="100%",
        id="start-form",
    )


def past_row(e: Experiment) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(e.experiment_id, size="1", white_space="nowrap")),
        rx.table.cell(rx.code(e.control.version, size="1", white_space="nowrap")),
        rx.table.cell(rx.code(e.candidate.version, size="1", white_space="nowrap")),
        rx.table.cell(rx.badge(e.status, variant="soft", color_scheme=rx.match(
            e.status, ("concluded", "grass"), ("stopped", "gray"), "amber"))),
        rx.table.cell(rx.badge(e.decision, variant="solid", color_scheme=rx.match(
            e.decision, ("promote", "grass"), ("keep", "orange"), "gray")),
            class_name="past-decision"),
        rx.table.cell(rx.text(e.reason, size="1")),
        rx.table.cell(rx.vstack(rx.text(e.difference, size="1", white_space="nowrap"),
                                rx.text(e.interval, size="1", color_scheme="gray"),
                                spacing="0")),
        rx.table.cell(rx.text(e.ended_at, size="1", white_space="nowrap")),
        class_name="past-row", data_experiment_id=e.experiment_id, data_decision=e.decision,
        align="center",
    )


def experiments_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            section_title("Experiments", "flask-conical"),
            rx.cond(OpsState.has_running, running_experiment(),
                    rx.text("No experiment is running.", size="2", color_scheme="gray",
                            id="no-running")),
            rx.cond(OpsState.stop_message != "",
                    rx.callout(OpsState.stop_message,
                               icon=rx.cond(OpsState.stop_ok, "info", "circle-alert"),
                               color_scheme=rx.cond(OpsState.stop_ok, "grass", "red"),
                               size="1", width="100%", id="stop-result",
                               data_ok=rx.cond(OpsState.stop_ok, "true", "false"))),
            rx.divider(),
            start_form(),
            rx.divider(),
            rx.text("Past experiments", size="2", weight="bold"),
            rx.cond(
                OpsState.past.length() > 0,
                rx.box(
                    rx.table.root(
                        rx.table.header(rx.table.row(
                            *[rx.table.column_header_cell(h) for h in
                              ["Experiment", "Control", "Candidate", "Status", "Decision",
                               "Why", "Difference, interval", "Ended (UTC)"]])),
                        rx.table.body(rx.foreach(OpsState.past, past_row)),
                        size="1", width="100%",
                    ),
                    width="100%", overflow_x="auto", max_height="360px", overflow_y="auto",
                ),
                rx.text("None yet.", size="2", color_scheme="gray"),
            ),
            confirm_dialog(),
            spacing="3", width="100%",
        ),
        width="100%", id="experiments",
    )
