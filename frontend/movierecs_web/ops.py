"""The ops page: live charts from /admin/stats, error log, model versions, reload, retrain."""
from __future__ import annotations

import reflex as rx

from .components import section_title, shell
from .ops_state import ErrorLine, OpsState, Version

CHART_H = 200


def stat(label: str, value, unit: str, icon: str, test_id: str) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(rx.icon(icon, size=15, color=rx.color("accent", 10)),
                      rx.text(label, size="1", color_scheme="gray", weight="medium"),
                      align="center", spacing="2"),
            rx.hstack(rx.text(value, size="6", weight="bold", id=test_id),
                      rx.text(unit, size="1", color_scheme="gray"), align="baseline",
                      spacing="1"),
            spacing="1",
        ),
        flex="1 1 140px",
    )


def _axes() -> list[rx.Component]:
    return [
        rx.recharts.cartesian_grid(stroke_dasharray="3 3", stroke=rx.color("gray", 5)),
        rx.recharts.x_axis(data_key="minute", tick={"fontSize": 11}, min_tick_gap=24),
        rx.recharts.y_axis(tick={"fontSize": 11}, width=40),
        rx.recharts.graphing_tooltip(),
    ]


def chart_card(title: str, chart: rx.Component, test_id: str) -> rx.Component:
    return rx.card(
        rx.vstack(rx.text(title, size="2", weight="bold"), chart, width="100%", spacing="2"),
        width="100%", id=test_id, class_name="chart-card",
    )


def charts() -> rx.Component:
    rps = rx.recharts.area_chart(
        rx.recharts.area(data_key="rps", name="req/s", stroke=rx.color("accent", 9),
                         fill=rx.color("accent", 5), type_="monotone", is_animation_active=False),
        *_axes(), data=OpsState.series, width="100%", height=CHART_H,
    )
    latency = rx.recharts.line_chart(
        rx.recharts.line(data_key="p50", name="p50 ms", stroke=rx.color("grass", 9), dot=False,
                         type_="monotone", is_animation_active=False),
        rx.recharts.line(data_key="p95", name="p95 ms", stroke=rx.color("orange", 9), dot=False,
                         type_="monotone", is_animation_active=False),
        rx.recharts.legend(), *_axes(), data=OpsState.series, width="100%", height=CHART_H,
    )
    errors = rx.recharts.bar_chart(
        rx.recharts.bar(data_key="errors", name="errors", fill=rx.color("red", 9),
                        is_animation_active=False),
        *_axes(), data=OpsState.series, width="100%", height=CHART_H,
    )
    likes = rx.recharts.bar_chart(
        rx.recharts.bar(data_key="likes", name="likes/min", fill=rx.color("ruby", 8),
                        is_animation_active=False),
        *_axes(), data=OpsState.series, width="100%", height=CHART_H,
    )
    return rx.grid(
        chart_card("Requests per second", rps, "chart-rps"),
        chart_card("Latency p50 / p95 (ms)", latency, "chart-latency"),
        chart_card("Errors per minute", errors, "chart-errors"),
        chart_card("Likes per minute", likes, "chart-likes"),
        columns=rx.breakpoints(initial="1", md="2"), spacing="4", width="100%",
    )


def version_row(v: Version) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.hstack(rx.code(v.version, size="1", white_space="nowrap"),
                      rx.cond(v.current, rx.badge("current", color_scheme="grass",
                                                  variant="solid", class_name="current-badge")),
                      spacing="2", align="center", wrap="wrap"),
        ),
        rx.table.cell(rx.text(v.created_at, size="1", white_space="nowrap")),
        rx.table.cell(rx.badge(v.status, color_scheme=rx.match(
            v.status.lower(), ("failed", "red"), ("running", "amber"), ("promoted", "grass"),
            ("succeeded", "grass"), "gray"), variant="soft")),
        rx.table.cell(rx.cond(v.promoted, rx.icon("check", size=16, aria_label="promoted"),
                              rx.text("—", color_scheme="gray"))),
        rx.table.cell(rx.text(v.metrics, size="1", color_scheme="gray")),
        rx.table.cell(
            rx.button(
                rx.cond(v.current, "Reload", "Roll back to this"),
                on_click=OpsState.reload(v.version),
                loading=OpsState.action_busy == v.version,
                disabled=OpsState.action_busy != "",
                size="1", variant=rx.cond(v.current, "soft", "outline"),
                aria_label=rx.cond(v.current, "Reload " + v.version, "Roll back to " + v.version),
            ),
        ),
        class_name="version-row", align="center",
    )


def versions_table() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.flex(
                section_title("Model versions and training runs", "layers"),
                rx.spacer(),
                rx.button(rx.icon("refresh-cw", size=14), "Start retrain",
                          on_click=OpsState.retrain, loading=OpsState.action_busy == "retrain",
                          disabled=OpsState.action_busy != "", size="2", id="retrain",
                          aria_label="Start a retraining run"),
                width="100%", align="center", gap="0.75em", wrap="wrap",
            ),
            rx.cond(OpsState.result != "",
                    rx.callout(OpsState.result, icon=rx.cond(OpsState.result_ok, "info", "circle-alert"),
                               color_scheme=rx.cond(OpsState.result_ok, "grass", "red"),
                               size="1", width="100%", id="action-result")),
            rx.box(
                rx.table.root(
                    rx.table.header(rx.table.row(
                        *[rx.table.column_header_cell(h) for h in
                          ["Version", "Created (UTC)", "Status", "Promoted", "Metrics", ""]])),
                    rx.table.body(rx.foreach(OpsState.versions, version_row)),
                    size="1", width="100%",
                ),
                rx.cond(OpsState.versions.length() == 0,
                        rx.text("No model versions yet: start a retrain.", size="2",
                                color_scheme="gray", padding="0.75em")),
                width="100%", overflow_x="auto",
            ),
            spacing="3", width="100%",
        ),
        width="100%",
    )


def error_row(e: ErrorLine) -> rx.Component:
    return rx.box(
        rx.hstack(rx.text(e.ts, size="1", color_scheme="gray", white_space="nowrap"),
                  rx.badge(e.function, size="1", color_scheme="red", variant="soft"),
                  rx.text(e.request_id, size="1", color_scheme="gray", trim="both",
                          line_clamp=1),
                  spacing="2", align="center", wrap="wrap"),
        rx.text(e.message, size="1", font_family="var(--code-font-family)",
                white_space="pre-wrap", word_break="break-word"),
        padding_y="0.5em", border_bottom=f"1px solid {rx.color('gray', 3)}", width="100%",
        class_name="error-line",
    )


def error_log() -> rx.Component:
    return rx.card(
        rx.vstack(
            section_title("Latest errors", "bug"),
            rx.cond(OpsState.errors.length() > 0,
                    rx.box(rx.foreach(OpsState.errors, error_row), width="100%",
                           max_height="320px", overflow_y="auto"),
                    rx.text("No errors logged.", size="2", color_scheme="gray")),
            spacing="3", width="100%",
        ),
        width="100%",
    )


def page() -> rx.Component:
    return shell(
        rx.vstack(
            rx.flex(
                rx.vstack(rx.heading("Operations", size="7", weight="bold"),
                          rx.text("Live service telemetry and model management.", size="2",
                                  color_scheme="gray"), spacing="1"),
                rx.spacer(),
                rx.hstack(
                    rx.select(["15", "60", "180", "1440"], value=OpsState.minutes,
                              on_change=OpsState.set_minutes, size="2",
                              aria_label="Time window in minutes"),
                    rx.text("min", size="2", color_scheme="gray"),
                    rx.button(rx.icon("rotate-cw", size=14), "Refresh", on_click=OpsState.refresh,
                              loading=OpsState.loading, size="2", variant="soft", id="refresh",
                              aria_label="Refresh the ops data"),
                    align="center", spacing="2",
                ),
                width="100%", align="end", gap="1em", wrap="wrap",
            ),
            rx.cond(OpsState.error != "",
                    rx.callout(OpsState.error, icon="circle-alert", color_scheme="red",
                               role="alert", width="100%", id="error")),
            rx.flex(
                stat("Requests", OpsState.total_requests, "in window", "arrow-down-up",
                     "total-requests"),
                stat("Peak", OpsState.peak_rps, "req/s", "gauge", "peak-rps"),
                stat("Latency p50 / p95 (last minute)", OpsState.latency_now, "ms", "timer",
                     "latency-now"),
                stat("Errors", OpsState.total_errors, "in window", "triangle-alert",
                     "total-errors"),
                stat("Likes", OpsState.total_likes, "in window", "heart", "total-likes"),
                gap="0.75em", wrap="wrap", width="100%",
            ),
            charts(),
            versions_table(),
            error_log(),
            rx.text("Updated ", OpsState.updated, size="1", color_scheme="gray"),
            spacing="4", width="100%", id="ops-root", data_updated=OpsState.updated,
            data_loading=rx.cond(OpsState.loading, "true", "false"),
        ),
    )
