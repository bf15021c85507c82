"""Frontend figures: time to first render of the recommendations page, and from the click on
"Get recommendations" to the cards shown, in Debian's Chromium against the running stack.

Why these two: they are what a person waits for. The first includes loading the Reflex
bundle and connecting its websocket; the second is a round trip browser -> Reflex backend ->
API Gateway -> recommend function -> back, then a React render. Each is put next to a
baseline measured in the same run, so the report shows what the frontend adds:
  * first render vs a plain HTTP GET of the page's HTML (python-requests);
  * click -> cards vs a direct GET /recommendations on the API (python-requests), one
    right after each click, so both see the same machine load.

Method: times come from the page's own clock (performance.now(), read by a MutationObserver
the bench installs), so Playwright's round trips are not in them. Each sample of the first
render uses a fresh browser profile (cold cache) and is timed from navigation start to the
page being hydrated and connected to the backend (the `data-ready` marker set by the page's
on_load event); the browser's first-contentful-paint is reported too. Each click sample asks
for a different random MovieLens user (k=10), timed from the click event to the DOM mutation
that puts the new cards in.

`python -m bench.frontend [--quick]` (needs `make up`); writes bench/results/frontend.json.
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

import requests

from bench import harness

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
K = 10
USERS = (1, 6040)
WAIT_MS = 60_000


def _launch(p, profile: str):
    ctx = p.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900}, service_workers="block")
    # Nothing may leave loopback: abort anything else (and fail the run).
    off: list[str] = []

    def route(r):
        host = r.request.url.split("/")[2].split(":")[0] if "://" in r.request.url else ""
        if host == "127.0.0.1":
            r.continue_()
        else:
            off.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    return ctx, off


# Records (in the page's clock) when #recs-root first says data-ready="true".
READY_PROBE = """
window.__ready = null;
new MutationObserver(() => {
  const r = document.querySelector('#recs-root');
  if (window.__ready === null && r && r.dataset.ready === 'true') window.__ready = performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready']});
"""
# Arms a probe: click time (capture listener) and the mutation that finishes the next fetch.
CLICK_PROBE = """
n => {
  const r = document.querySelector('#recs-root');
  window.__click = null; window.__done = null;
  document.querySelector('#get-recs').addEventListener('click',
      () => { window.__click = performance.now(); }, {capture: true, once: true});
  const mo = new MutationObserver(() => {
    if (Number(r.dataset.fetches) > n && r.dataset.loading === 'false'
        && document.querySelectorAll('#recs-grid .movie-card').length > 0) {
      window.__done = performance.now(); mo.disconnect();
    }
  });
  mo.observe(r, {subtree: true, childList: true, attributes: true});
}
"""


def _first_render(p, url: str, runs: int) -> tuple[list[float], list[float]]:
    ready_ms, fcp_ms = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as profile:
            ctx, off = _launch(p, profile)
            ctx.add_init_script(READY_PROBE)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            page.wait_for_function("() => window.__ready !== null")
            ready_ms.append(float(page.evaluate("window.__ready")))
            fcp = page.evaluate(
                "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
            if fcp is not None:
                fcp_ms.append(float(fcp))
            ctx.close()
            if off:
                raise RuntimeError(f"the page sent requests off loopback: {off[:5]}")
    return ready_ms, fcp_ms


def _click_to_cards(p, url: str, api: str, runs: int, rng: random.Random) -> tuple[list[float], list[float]]:
    """Click samples, each paired with a direct API call right after it (same load)."""
    http = requests.Session()
    http.trust_env = False
    samples, direct = [], []
    with tempfile.TemporaryDirectory() as profile:
        ctx, off = _launch(p, profile)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.wait_for_selector('#recs-root[data-ready="true"]')
        page.fill("#k", str(K))
        for i in range(runs + 2):  # 2 warm-up clicks
            page.fill("#user_id", str(rng.randint(*USERS)))
            before = int(page.get_attribute("#recs-root", "data-fetches") or 0)
            page.evaluate(CLICK_PROBE, before)
            page.click("#get-recs")
            page.wait_for_function("() => window.__done !== null && window.__click !== null")
            dt = float(page.evaluate("window.__done - window.__click"))
            if page.locator("#error").count():
                raise RuntimeError(f"the page showed an error: {page.inner_text('#error')}")
            with harness.timer() as t:
                http.get(api + "/recommendations", params={"user_id": rng.randint(*USERS), "k": K},
                         timeout=60).raise_for_status()
            if i >= 2:
                samples.append(dt)
                direct.append(t["ms"])
        ctx.close()
        if off:
            raise RuntimeError(f"the page sent requests off loopback: {off[:5]}")
    return samples, direct


def _html_baseline(ep: dict, runs: int) -> list[float]:
    http = requests.Session()
    http.trust_env = False
    return harness.time_calls(lambda: http.get(ep["frontend"] + "/", timeout=30).raise_for_status(), runs)


def run(quick: bool) -> dict:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make up` (frontend/install.sh installs it)")
    ep = harness.endpoints()
    url = ep["frontend"].rstrip("/") + "/"
    runs = 5 if quick else 20
    rng = random.Random(20261127)
    with sync_playwright() as p:
        ready, fcp = _first_render(p, url, runs)
        clicks, api = _click_to_cards(p, url, ep["api"].rstrip("/"), runs, rng)
    html = _html_baseline(ep, runs)
    return {
        "figures": [
            harness.distribution(
                "frontend_first_render", "Recommendations page: time to first render (cold profile)",
                {"browser: navigation start -> hydrated and connected": ready,
                 "browser: first contentful paint": fcp,
                 "HTTP GET of the page HTML (baseline)": html},
                baseline="HTTP GET of the page HTML (baseline)",
                note=f"p50 over {runs} runs, each with a fresh Chromium profile"),
            harness.distribution(
                "frontend_click_to_cards", "Click 'Get recommendations' -> cards shown (k=10)",
                {"browser: click -> cards in the DOM": clicks,
                 "API GET /recommendations (baseline)": api},
                baseline="API GET /recommendations (baseline)",
                note=f"p50 over {runs} runs, a different random MovieLens user each run; each click "
                     "is followed by one direct API call (same machine load)"),
        ],
        "params": {"runs": runs, "k": K, "frontend": ep["frontend"], "chromium": CHROMIUM,
                   "users": list(USERS)},
        "notes": "Reflex prod mode (one port) on 127.0.0.1; Debian Chromium headless via Playwright.",
    }


if __name__ == "__main__":
    harness.cli("frontend", run)
