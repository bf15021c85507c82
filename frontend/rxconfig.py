"""Reflex config for the MovieRecs web frontend.

Served with `reflex run --env prod` (frontend and backend on one port, see serve.sh).
The browser must only ever talk to loopback, so the backend URL baked into the build is
127.0.0.1 on the served port, never "localhost" (which may resolve to ::1) or 0.0.0.0.
"""
import os

import reflex as rx

PORT = int(os.environ.get("MOVIERECS_FRONTEND_PORT", "13000"))

config = rx.Config(
    app_name="movierecs_web",
    frontend_port=PORT,
    backend_port=PORT,
    backend_host="127.0.0.1",
    api_url=f"http://127.0.0.1:{PORT}",
    deploy_url=f"http://127.0.0.1:{PORT}",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="dark", accent_color="iris", gray_color="slate",
                           radius="large", has_background=True),
        ),
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
