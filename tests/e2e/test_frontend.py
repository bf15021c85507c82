"""Browser tests of the web frontend against the real running stack (`make up`).

Why a real browser: the frontend is a Reflex app whose state lives on the Reflex backend
and reaches the page over a websocket; only a browser shows that a click really turns into
API calls and rendered cards. Debian's Chromium is driven by Playwright for Python
(`executable_path`, never `playwright install`), with a fresh profile per test and flags
that keep it from calling home. Every request the page makes is recorded and must go to
127.0.0.1 (anything else is also aborted, so a failing test still sends nothing out);
console errors fail the test. Screenshots go to test-artifacts/ (git-ignored).

What is checked: the cards shown for a user are the API's list; a like shows the liked
state at once and the movie is gone from the next list; five likes turn a new user's
popular list into a personal one (fold_in/personal); the ops page draws its charts from
GET /admin/stats and lists the models and error lines the admin API returns; the page is
usable by keyboard and at phone width; bad input gets a clear message. The list controls
(issue 11): excluding a genre with its chip leaves no card of that genre and including one
keeps only cards of it, each time exactly the API's filtered list; the diversity slider
turns the list into the API's diversity=1 list; Load more appends the API's next page (no
movie twice); "only N match" shows when the API says the filters are exhausted; under each
card its reasons name the history movies the API gives, and a new user's cards say
"Popular with everyone". The online parts of the ops page (issue 13): the like-rate chart has
a line per model version GET /admin/stats lists (its table the same versions and counts, its
tooltip the interval); an A/A experiment started from the page's form shows in the panel and
"Keep control" (after a confirmation) ends it with decision keep, as the API then says; a
bad start shows the API's own 400 message. No experiment of these tests is left running.
"""
from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
# The stack's endpoints file; overridable only to point the tests at another running stack.
ENDPOINTS = Path(os.environ.get("MOVIERECS_ENDPOINTS_FILE", ROOT / ".movierecs" / "endpoints.json"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOOPBACK = {"127.0.0.1"}
MODEL_USERS = (1, 6040)          # MovieLens 1M users: in the model
sys.path.insert(0, str(ROOT / "frontend"))
from movierecs_web.posters import display_title  # noqa: E402  (pure: no Reflex import)
from movierecs_web.online import pct  # noqa: E402  (pure: no Reflex import)

LIKE_VISIBLE_S = 20.0            # contract: 5 s; generous for a loaded 2-core machine
WAIT_MS = 60_000                 # first API calls may hit cold Lambda environments


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def stack() -> dict:
    if not ENDPOINTS.exists():
        pytest.fail("the stack is not up (.movierecs/endpoints.json is missing): run `make up` first")
    ep = json.loads(ENDPOINTS.read_text())
    for key in ("frontend", "api"):
        if not ep.get(key):
            pytest.fail(f".movierecs/endpoints.json has no {key!r}: run `make up` first")
        assert urlparse(ep[key]).hostname in LOOPBACK, f"{key} is not on loopback: {ep[key]}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _http().get(ep["frontend"] + "/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the frontend at {ep['frontend']} does not answer: run `make up` first")
        time.sleep(1)
    ARTIFACTS.mkdir(exist_ok=True)
    return ep


def _http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never through a proxy
    return s


@dataclass
class Api:
    """Direct calls to the API, to compare what the page shows with what the API says."""

    base: str
    key: str
    http: requests.Session = field(default_factory=_http)

    def get(self, path: str, admin: bool = False, **params) -> dict:
        r = self.http.get(self.base + path, params=params, timeout=60,
                          headers={"x-api-key": self.key} if admin else {})
        assert r.status_code == 200, f"GET {path} answered {r.status_code}: {r.text[:300]}"
        return r.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.base + path, json=body, timeout=60,
                              headers={"x-api-key": self.key})


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api(stack["api"].rstrip("/"), stack.get("admin_api_key", ""))


@pytest.fixture(scope="module")
def playwright_driver():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make up` (frontend/install.sh installs it)")
    with sync_playwright() as p:
        yield p


@dataclass
class Session:
    """One browser profile and page, with everything it sent and logged."""

    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"frontend_{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        off_loopback = [u for u in self.requests if urlparse(u).hostname not in LOOPBACK]
        assert not off_loopback, f"the page sent requests off loopback: {off_loopback[:10]}"
        assert not self.blocked, f"requests off loopback were attempted: {self.blocked[:10]}"
        assert not self.console_errors, f"console errors: {self.console_errors[:10]}"
        assert self.requests, "no request was recorded: the recorder is broken"


@pytest.fixture
def browser(playwright_driver, stack, tmp_path):
    def make(width: int = 1280, height: int = 900) -> Session:
        ctx = playwright_driver.chromium.launch_persistent_context(
            str(tmp_path / f"profile-{width}"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": width, "height": height},
            service_workers="block",
        )
        contexts.append(ctx)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        s = Session(page=page, base=stack["frontend"].rstrip("/"))

        def route(r):
            if urlparse(r.request.url).hostname in LOOPBACK or r.request.url.startswith("data:"):
                r.continue_()
            else:
                s.blocked.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        ctx.on("request", lambda req: s.requests.append(req.url))
        page.on("websocket", lambda ws: s.requests.append(ws.url))
        page.on("console", lambda m: s.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: s.console_errors.append(f"pageerror: {e}"))
        return s

    contexts: list = []
    yield make
    for ctx in contexts:
        ctx.close()


# --------------------------------------------------------------------------- page helpers
def open_recs(s: Session) -> None:
    s.page.goto(s.base + "/")
    s.page.wait_for_selector('#recs-root[data-ready="true"]')


def fetches(s: Session) -> int:
    return int(s.page.get_attribute("#recs-root", "data-fetches") or 0)


def submit_and_wait(s: Session, action) -> None:
    """Run `action` (which starts a fetch) and wait until that fetch has finished."""
    before = fetches(s)
    action()
    s.page.wait_for_function(
        "n => { const r = document.querySelector('#recs-root');"
        " return Number(r.dataset.fetches) > n && r.dataset.loading === 'false'; }", arg=before)


def get_recs(s: Session, user_id: int, k: int) -> None:
    s.page.fill("#user_id", str(user_id))
    s.page.fill("#k", str(k))
    submit_and_wait(s, lambda: s.page.press("#user_id", "Enter"))


def refetch(s: Session) -> None:
    submit_and_wait(s, lambda: s.page.click("#get-recs"))


def shown_ids(s: Session) -> list[int]:
    return [int(x) for x in s.page.eval_on_selector_all(
        "#recs-grid .movie-card", "els => els.map(e => e.dataset.movieId)")]


def strategy(s: Session) -> str:
    return s.page.get_attribute("#strategy", "data-strategy") or ""


def card(s: Session, movie_id: int, grid: str = "#recs-grid"):
    return s.page.locator(f'{grid} .movie-card[data-movie-id="{movie_id}"]')


def like(s: Session, movie_id: int) -> None:
    button = card(s, movie_id).locator(".like-button")
    button.click()
    # Optimistic: liked at once, before the API answered.
    s.page.wait_for_selector(
        f'#recs-grid .movie-card[data-movie-id="{movie_id}"] .like-button[aria-pressed="true"]')


def wait_likes_acknowledged(s: Session, ids: list[int]) -> None:
    for mid in ids:
        button = card(s, mid).locator(".like-button")
        s.page.wait_for_function(
            "el => el.textContent.trim() !== 'Liking…'", arg=button.element_handle())
        assert button.get_attribute("aria-pressed") == "true", (
            f"like of {mid} was reverted: {s.page.locator('#error').all_inner_texts()}")


def refetch_until(s: Session, done, what: str) -> None:
    deadline = time.monotonic() + LIKE_VISIBLE_S
    while True:
        refetch(s)
        if done():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"after {LIKE_VISIBLE_S:.0f} s: {what} (strategy {strategy(s)}, "
                        f"shown {shown_ids(s)})")
        time.sleep(0.5)


# --------------------------------------------------------------------------- tests
def test_recommendations_for_a_user_are_the_apis(browser, api):
    s = browser()
    user_id = random.randint(*MODEL_USERS)
    open_recs(s)
    get_recs(s, user_id, 8)
    expected = api.get("/recommendations", user_id=user_id, k=8)

    assert shown_ids(s) == [it["movie_id"] for it in expected["items"]]
    titles = s.page.eval_on_selector_all("#recs-grid .movie-title", "els => els.map(e => e.title)")
    assert titles == [it["title"] for it in expected["items"]]
    shown = s.page.locator("#recs-grid .movie-title").all_inner_texts()
    assert all(t.strip() for t in shown)
    assert strategy(s) == expected["strategy"]
    assert s.page.inner_text("#model-version") == expected["model_version"]
    # Posters are drawn locally: a gradient background, initials, no image download.
    poster = s.page.locator('#recs-grid [role="img"]').first
    assert "gradient" in poster.evaluate("e => getComputedStyle(e).backgroundImage")
    assert re.fullmatch(r"[A-Z0-9?]{1,2}", poster.inner_text().split("\n")[0].strip())
    assert not s.page.locator("img").count(), "no <img> expected: posters are CSS"
    s.shot("recommendations")
    s.assert_clean()


def test_like_shows_liked_state_and_leaves_the_next_list(browser, api):
    s = browser()
    user_id = random.randint(*MODEL_USERS)
    open_recs(s)
    get_recs(s, user_id, 10)
    ids = shown_ids(s)
    assert len(ids) == 10
    target = ids[0]
    title = card(s, target).locator(".movie-title").inner_text().strip()

    like(s, target)
    wait_likes_acknowledged(s, [target])
    assert card(s, target).locator(".like-button").inner_text().strip() == "Liked"
    s.page.locator("[data-sonner-toast]").filter(has_text="Liked").first.wait_for()
    s.page.locator("#recent-likes .like-row").filter(has_text=title).first.wait_for()
    s.page.wait_for_selector("#similar-grid .movie-card")
    assert title in s.page.inner_text("#recs-root")  # "Because you liked “title”"
    s.shot("liked")

    refetch_until(s, lambda: target not in shown_ids(s) and len(shown_ids(s)) == 10,
                  f"liked movie {target} is still recommended")
    assert target in [x["movie_id"] for x in api.get(f"/users/{user_id}/likes")["items"]]
    s.assert_clean()


def test_five_likes_turn_a_new_users_popular_list_personal(browser):
    s = browser()
    open_recs(s)
    s.page.fill("#k", "10")
    submit_and_wait(s, lambda: s.page.click("#new-user"))
    user_id = int(s.page.input_value("#user_id"))
    assert user_id > 100_000
    assert strategy(s) == "popular"
    s.shot("new_user_popular")

    liked = shown_ids(s)[:5]
    for mid in liked:
        like(s, mid)
    wait_likes_acknowledged(s, liked)
    assert s.page.locator("#error").count() == 0
    s.page.wait_for_function("() => document.querySelectorAll('#recent-likes .like-row').length >= 5")

    # every like visible (the contract's 5 s), not just the first one to reach the store
    refetch_until(s, lambda: strategy(s) in ("fold_in", "personal") and not set(liked) & set(shown_ids(s)),
                  "five likes did not turn the popular list into a personal one without them")
    assert not set(liked) & set(shown_ids(s)), "a liked movie is recommended again"
    assert s.page.get_attribute("#strategy", "data-strategy") in ("fold_in", "personal")
    s.shot("new_user_personal")
    s.assert_clean()


def _stats_total(api: Api) -> tuple[int, str]:
    stats = api.get("/admin/stats", admin=True, minutes=60)
    series = stats["requests"]
    return int(sum(p["v"] for p in series)), (series[0]["t"] if series else "")


def test_ops_page_draws_charts_from_real_data(browser, api):
    for _ in range(3):  # make sure the window has traffic
        api.get("/recommendations", user_id=1, k=5)
    models = api.get("/admin/models", admin=True)
    before, first_minute = _stats_total(api)

    s = browser()
    s.page.goto(s.base + "/ops")
    s.page.wait_for_function(
        "() => { const r = document.querySelector('#ops-root');"
        " return r && r.dataset.updated && r.dataset.loading === 'false'; }")
    after, first_minute_after = _stats_total(api)
    errors_api = api.get("/admin/errors", admin=True, limit=20)["items"]

    assert s.page.locator("#ops-root [role=alert]").count() == 0, s.page.inner_text("#ops-root")
    shown = int(s.page.inner_text("#total-requests"))
    assert shown > 0
    if first_minute == first_minute_after:  # the 60-minute window did not slide meanwhile
        assert before <= shown <= after, (before, shown, after)

    for chart in ("#chart-rps", "#chart-latency", "#chart-errors", "#chart-likes"):
        s.page.wait_for_selector(f"{chart} .recharts-surface")
    area = s.page.get_attribute("#chart-rps .recharts-area-curve", "d") or ""
    assert area.count("C") + area.count("L") >= 1, f"the rps chart has no line: {area!r}"
    assert s.page.locator("#chart-latency .recharts-line-curve").count() == 2
    ticks = s.page.locator("#chart-rps .recharts-xAxis .recharts-cartesian-axis-tick").count()
    assert ticks >= 2

    models_after = api.get("/admin/models", admin=True)
    rows = s.page.locator(".version-row")
    # A retrain finishing meanwhile may add a version: the page shows one of the two lists.
    assert rows.count() in {len(models["versions"]), len(models_after["versions"])}
    current_row = s.page.locator(".version-row:has(.current-badge)")
    assert current_row.count() == 1
    assert models_after["current"] in current_row.inner_text() or models["current"] in current_row.inner_text()
    models = models_after
    current_row = s.page.locator(".version-row:has(.current-badge)")
    assert s.page.locator(".error-line").count() in range(len(errors_api), 21)
    s.shot("ops")

    # Reloading the current version changes nothing but goes through the real admin API.
    current_row.get_by_role("button").click()
    s.page.wait_for_selector("#action-result")
    assert f"Now serving model {models['current']}" in s.page.inner_text("#action-result")
    s.assert_clean()


def test_keyboard_and_phone_width(browser):
    s = browser(width=390, height=844)
    open_recs(s)
    # Tab reaches the user id field; Enter submits the form.
    for _ in range(12):
        s.page.keyboard.press("Tab")
        if s.page.evaluate("document.activeElement && document.activeElement.id") == "user_id":
            break
    else:
        pytest.fail("Tab never reached the user id field")
    s.page.keyboard.press("Control+A")
    s.page.keyboard.type("1")
    submit_and_wait(s, lambda: s.page.keyboard.press("Enter"))
    assert len(shown_ids(s)) > 0

    overflow = s.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    unlabeled = s.page.evaluate("""() => [...document.querySelectorAll('button, a, input')]
        .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length))
        .map(e => e.outerHTML.slice(0, 80))""")
    assert not unlabeled, f"controls without a label: {unlabeled}"
    s.shot("phone")
    s.assert_clean()


def test_bad_user_id_gets_a_clear_message(browser):
    s = browser()
    open_recs(s)
    s.page.fill("#user_id", "abc")
    submit_and_wait(s, lambda: s.page.press("#user_id", "Enter"))
    assert "User id must be a whole number" in s.page.inner_text("#error")
    s.page.fill("#user_id", "0")
    submit_and_wait(s, lambda: s.page.press("#user_id", "Enter"))
    assert "positive" in s.page.inner_text("#error")
    assert s.page.locator("#recs-grid .movie-card").count() == 0
    s.assert_clean()


# --------------------------------------------------------------------------- list controls (issue 11)
def act_and_wait(s: Session, action, n: int = 1) -> None:
    """Run `action`, which starts `n` fetches (one per control change), and wait for all."""
    before = fetches(s)
    action()
    s.page.wait_for_function(
        "([b, n]) => { const r = document.querySelector('#recs-root');"
        " return Number(r.dataset.fetches) >= b + n && r.dataset.loading === 'false'; }",
        arg=[before, n])


def chip(s: Session, genre: str):
    return s.page.locator(f'#genre-chips .genre-chip[data-genre="{genre}"]')


def shown_genres(s: Session) -> list[list[str]]:
    return [t.split(" · ") if t else [] for t in
            s.page.eval_on_selector_all("#recs-grid .movie-genres",
                                        "els => els.map(e => e.textContent.trim())")]


def ids_of(answer: dict) -> list[int]:
    return [it["movie_id"] for it in answer["items"]]


def user_with_genre_in_list(api: Api, genre: str, k: int) -> int:
    """A model user whose plain top k has `genre`, so excluding it must change the list."""
    for _ in range(20):
        user_id = random.randint(*MODEL_USERS)
        if any(genre in it["genres"] for it in api.get("/recommendations", user_id=user_id, k=k)["items"]):
            return user_id
    pytest.fail(f"no model user among 20 random ones has {genre} in the top {k}")


def test_genre_chips_include_and_exclude(browser, api):
    s = browser()
    user_id = user_with_genre_in_list(api, "Comedy", 10)
    open_recs(s)
    get_recs(s, user_id, 10)
    assert any("Comedy" in g for g in shown_genres(s)), "the unfiltered list should have a comedy"
    assert chip(s, "Comedy").get_attribute("data-mode") == "any"

    # one click includes, the second excludes: two reloads
    act_and_wait(s, lambda: (chip(s, "Comedy").click(), chip(s, "Comedy").click()), n=2)
    assert chip(s, "Comedy").get_attribute("data-mode") == "exclude"
    assert chip(s, "Comedy").get_attribute("aria-label") == "Comedy: excluded (click to clear)"
    genres = shown_genres(s)
    assert len(genres) == 10 and not any("Comedy" in g for g in genres), genres
    assert shown_ids(s) == ids_of(api.get("/recommendations", user_id=user_id, k=10,
                                          exclude_genres="Comedy"))
    s.shot("chips_exclude")

    act_and_wait(s, lambda: chip(s, "Drama").click())
    assert chip(s, "Drama").get_attribute("data-mode") == "include"
    genres = shown_genres(s)
    assert genres and all("Drama" in g and "Comedy" not in g for g in genres), genres
    assert shown_ids(s) == ids_of(api.get("/recommendations", user_id=user_id, k=10,
                                          include_genres="Drama", exclude_genres="Comedy"))

    # Clear filters: back to the plain list
    act_and_wait(s, lambda: s.page.click("#clear-filters"))
    assert {chip(s, g).get_attribute("data-mode") for g in ("Comedy", "Drama")} == {"any"}
    assert shown_ids(s) == ids_of(api.get("/recommendations", user_id=user_id, k=10))
    s.assert_clean()


def test_diversity_slider_changes_the_list(browser, api):
    s = browser()
    user_id = random.randint(*MODEL_USERS)
    open_recs(s)
    get_recs(s, user_id, 10)
    plain = shown_ids(s)
    assert plain == ids_of(api.get("/recommendations", user_id=user_id, k=10))
    assert s.page.inner_text("#diversity-value") == "0.0"

    s.page.focus("#diversity")
    act_and_wait(s, lambda: s.page.keyboard.press("End"))  # the range input's maximum: 1
    assert s.page.inner_text("#diversity-value") == "1.0"
    diverse = shown_ids(s)
    assert diverse != plain, "diversity 1 should re-rank the list"
    assert diverse == ids_of(api.get("/recommendations", user_id=user_id, k=10, diversity=1))
    assert len(set(diverse)) == 10
    s.shot("diversity")

    act_and_wait(s, lambda: s.page.keyboard.press("Home"))
    assert s.page.inner_text("#diversity-value") == "0.0"
    assert shown_ids(s) == plain
    s.assert_clean()


def test_load_more_appends_the_next_page(browser, api):
    s = browser()
    user_id = random.randint(*MODEL_USERS)
    open_recs(s)
    get_recs(s, user_id, 10)
    first = shown_ids(s)
    assert len(first) == 10
    page1 = api.get("/recommendations", user_id=user_id, k=10)
    assert first == ids_of(page1) and page1["next_cursor"]

    act_and_wait(s, lambda: s.page.click("#load-more"))
    ids = shown_ids(s)
    assert len(ids) == 20, ids
    assert ids[:10] == first, "Load more must append, not replace"
    assert len(set(ids)) == 20, f"a movie is shown twice: {ids}"
    titles = s.page.eval_on_selector_all("#recs-grid .movie-title", "els => els.map(e => e.title)")
    assert len(set(titles)) == 20, f"a title is shown twice: {titles}"
    page2 = api.get("/recommendations", user_id=user_id, k=10, cursor=page1["next_cursor"])
    assert ids[10:] == ids_of(page2)

    act_and_wait(s, lambda: s.page.click("#load-more"))
    ids = shown_ids(s)
    assert len(ids) == 30 and len(set(ids)) == 30 and ids[:20] == [*first, *ids_of(page2)]
    s.shot("load_more")

    # A rare genre and a year range: the page says what the API says about exhaustion.
    s.page.fill("#year_min", "1990")
    act_and_wait(s, lambda: s.page.press("#year_min", "Enter"))
    act_and_wait(s, lambda: chip(s, "Film-Noir").click())
    answer = api.get("/recommendations", user_id=user_id, k=10, include_genres="Film-Noir", year_min=1990)
    assert shown_ids(s) == ids_of(answer)
    assert all("Film-Noir" in g for g in shown_genres(s))
    if answer["exhausted"]:
        n = len(answer["items"])
        assert s.page.inner_text("#exhausted").strip() == (
            f"Only {n} movie{'s' if n != 1 else ''} match{'es' if n == 1 else ''} these filters."
            if n else "No movie matches these filters.")
        assert s.page.locator("#load-more").count() == 0
    else:
        assert s.page.locator("#exhausted").count() == 0
        assert s.page.locator("#load-more").count() == (1 if answer["next_cursor"] else 0)
    s.shot("exhausted")
    s.assert_clean()


def test_reasons_under_each_card(browser, api):
    s = browser()
    user_id = random.randint(*MODEL_USERS)
    open_recs(s)
    get_recs(s, user_id, 10)
    expected = api.get("/recommendations", user_id=user_id, k=10)
    assert shown_ids(s) == ids_of(expected)
    with_reasons = 0
    for item in expected["items"]:
        box = card(s, item["movie_id"]).locator(".reasons")
        named = [r for r in item["reasons"] if r["kind"] in ("liked", "rated")]
        if not named:
            assert box.count() == 0, f"{item['title']}: the API gives no reason, the card shows one"
            continue
        with_reasons += 1
        text = box.text_content().strip()
        assert text.startswith("Because you "), text
        assert box.get_attribute("data-reason-ids") == ",".join(str(r["movie_id"]) for r in named)
        for r in named:
            assert display_title(r["title"]) in text, (r, text)
            assert r["kind"] in text  # "liked" / "rated"
        assert "%" in (box.get_attribute("title") or ""), "the shares are in the tooltip"
    assert with_reasons >= 5, "a model user's list should mostly come with reasons"
    s.shot("reasons")

    # a new user's list is the popular one, and says so
    s.page.fill("#k", "10")
    submit_and_wait(s, lambda: s.page.click("#new-user"))
    assert strategy(s) == "popular"
    texts = s.page.eval_on_selector_all("#recs-grid .reasons", "els => els.map(e => e.textContent.trim())")
    assert texts == ["Popular with everyone"] * len(shown_ids(s)) and texts
    s.assert_clean()


# --------------------------------------------------------------------------- online and experiments (issue 13)
EXPERIMENT_FREE_S = 240.0        # another engineer's experiment may still be running


def open_ops(s: Session) -> None:
    s.page.goto(s.base + "/ops")
    wait_ops_loaded(s)


def refreshes(s: Session) -> int:
    return int(s.page.get_attribute("#ops-root", "data-refreshes") or 0)


def wait_ops_loaded(s: Session, after: int = 0) -> None:
    """Wait until more than `after` refreshes of the ops page have finished."""
    s.page.wait_for_function(
        "n => { const r = document.querySelector('#ops-root');"
        " return r && Number(r.dataset.refreshes) > n && r.dataset.loading === 'false'; }",
        arg=after)


def online_versions(api: Api) -> dict[str, dict]:
    stats = api.get("/admin/stats", admin=True, minutes=60)
    return {v["model_version"]: v for v in stats["online"]["versions"]}


def test_online_chart_has_a_line_per_version(browser, api):
    for user_id in (1, 2, 3):  # lists served now, so the window has impressions
        api.get("/recommendations", user_id=user_id, k=5)
    before = online_versions(api)
    s = browser()
    open_ops(s)
    after = online_versions(api)
    assert before or after, "GET /admin/stats lists no version with impressions in 60 min"

    rows = s.page.locator("#online-table .online-row")
    shown = [rows.nth(i).get_attribute("data-version") for i in range(rows.count())]
    assert len(shown) == len(set(shown))
    # The window slides and traffic goes on between the reads: versions in both reads must be
    # shown, and nothing that is in neither.
    assert set(before) & set(after) <= set(shown) <= set(before) | set(after), (before.keys(), shown)
    s.page.wait_for_selector("#chart-online .recharts-surface")
    assert s.page.locator("#chart-online .recharts-line").count() == len(shown)
    assert s.page.locator("#chart-online .online-band").count() == len(shown)
    legend = s.page.eval_on_selector_all("#chart-online .recharts-legend-item-text",
                                         "els => els.map(e => e.textContent.trim())")
    assert sorted(legend) == sorted(shown)
    # A dot per hourly point: at least one per line, at most every hour either read has.
    dots = s.page.locator("#chart-online .recharts-line-dots circle").count()
    hours = sum(max(len(before.get(v, {}).get("hourly", [])), len(after.get(v, {}).get("hourly", [])))
                for v in shown)
    assert len(shown) <= dots <= hours, (dots, hours)

    # Counts and rates of a version whose figures did not move between the two reads.
    steady = [v for v in shown if v in before and v in after
              and before[v]["impressions"] == after[v]["impressions"]
              and before[v]["converted"] == after[v]["converted"]]
    for v in steady:
        row = s.page.locator(f'#online-table .online-row[data-version="{v}"]')
        assert int(row.locator(".online-impressions").inner_text()) == after[v]["impressions"]
        assert int(row.locator(".online-converted").inner_text()) == after[v]["converted"]
        assert row.locator(".online-rate").inner_text() == pct(after[v]["rate"])

    # The tooltip names each version's rate and its interval ("lo ~ hi %").
    grid = s.page.locator("#chart-online .recharts-cartesian-grid")
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    s.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    tip = s.page.locator("#chart-online .recharts-tooltip-wrapper")
    s.page.wait_for_function(
        "() => { const t = document.querySelector('#chart-online .recharts-tooltip-wrapper');"
        " return t && t.textContent.includes(' ~ '); }")
    assert " %" in tip.inner_text()
    s.shot("ops_online")
    s.assert_clean()


def _running(api: Api) -> list[dict]:
    return [e for e in api.get("/admin/experiments", admin=True)["items"] if e["status"] == "running"]


def wait_no_experiment(api: Api) -> None:
    deadline = time.monotonic() + EXPERIMENT_FREE_S
    while (running := _running(api)) and time.monotonic() < deadline:
        time.sleep(3)
    if running:
        pytest.fail(f"experiment {running[0]['experiment_id']} (not this test's) is still running "
                    f"after {EXPERIMENT_FREE_S:.0f} s; one runs at a time")


def stop_own_experiments(api: Api, version: str, started_after: str) -> None:
    """Stop (keep) what this test started and left running; never another test's experiment."""
    for e in _running(api):
        if e["control"] == e["candidate"] == version and e["created_at"] >= started_after:
            r = api.post(f"/admin/experiments/{e['experiment_id']}/stop", {"decision": "keep"})
            assert r.status_code in (200, 409), r.text


def test_start_an_aa_experiment_and_keep_control_from_the_page(browser, api):
    wait_no_experiment(api)
    version = api.get("/admin/models", admin=True)["current"]
    assert version, "no model version is served"
    started_after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 5))
    s = browser()
    try:
        open_ops(s)
        assert s.page.locator("#no-running").count() == 1
        s.page.select_option("#exp-control", version)
        s.page.select_option("#exp-candidate", version)
        s.page.fill("#exp-share", "0.1")
        s.page.fill("#exp-min", "2000")
        s.page.fill("#exp-hours", "72")
        stamp = refreshes(s)
        s.page.click("#exp-start")
        s.page.wait_for_selector("#start-result")
        assert s.page.get_attribute("#start-result", "data-ok") == "true", s.page.inner_text("#start-result")
        wait_ops_loaded(s, stamp)

        running = _running(api)
        assert len(running) == 1, running
        exp = running[0]
        assert exp["control"] == exp["candidate"] == version and exp["share"] == 0.1
        assert (exp["min_impressions"], exp["max_hours"]) == (2000, 72)
        panel = s.page.locator("#running-experiment")
        assert panel.get_attribute("data-experiment-id") == exp["experiment_id"]
        assert exp["experiment_id"] in s.page.inner_text("#start-result")
        for arm in ("control", "candidate"):
            card_ = panel.locator(f'.arm-card[data-arm="{arm}"]')
            assert card_.locator(".arm-version").inner_text() == version
            assert int(card_.locator(".arm-users").inner_text()) >= 0
        assert s.page.inner_text("#rules-reason") != ""
        s.shot("ops_experiment_running")

        # "Keep control" asks first; Cancel leaves it running.
        s.page.click("#exp-keep")
        dialog = s.page.get_by_role("alertdialog")
        dialog.wait_for()
        assert version in dialog.inner_text()
        s.page.click("#confirm-cancel")
        dialog.wait_for(state="hidden")
        assert [e["experiment_id"] for e in _running(api)] == [exp["experiment_id"]]

        s.page.click("#exp-keep")
        dialog.wait_for()
        stamp = refreshes(s)
        s.page.click("#confirm-stop")
        s.page.wait_for_selector("#stop-result")
        assert s.page.get_attribute("#stop-result", "data-ok") == "true", s.page.inner_text("#stop-result")
        assert f"now serving {version}" in s.page.inner_text("#stop-result")
        wait_ops_loaded(s, stamp)

        ended = api.get(f"/admin/experiments/{exp['experiment_id']}", admin=True)
        assert (ended["status"], ended["decision"]) == ("stopped", "keep"), ended
        assert not [e for e in _running(api) if e["experiment_id"] == exp["experiment_id"]]
        assert s.page.locator("#no-running").count() == 1
        past = s.page.locator(f'.past-row[data-experiment-id="{exp["experiment_id"]}"]')
        assert past.get_attribute("data-decision") == "keep"
        # The models were refreshed: the version kept is the one marked current.
        assert version in s.page.inner_text(".version-row:has(.current-badge)")
        s.shot("ops_experiment_kept")
        s.assert_clean()
    finally:
        stop_own_experiments(api, version, started_after)


def test_a_bad_experiment_start_shows_the_apis_message(browser, api):
    version = api.get("/admin/models", admin=True)["current"]
    body = {"control": version, "candidate": version, "share": 0.0, "min_impressions": 2000,
            "max_hours": 72.0}
    started_after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 5))
    try:
        direct = api.post("/admin/experiments", body)
        assert direct.status_code == 400, direct.text
        message = direct.json()["error"]
        s = browser()
        open_ops(s)
        s.page.select_option("#exp-control", version)
        s.page.select_option("#exp-candidate", version)
        s.page.fill("#exp-share", "0")
        s.page.click("#exp-start")
        s.page.wait_for_selector("#start-result")
        text = s.page.inner_text("#start-result")
        assert s.page.get_attribute("#start-result", "data-ok") == "false"
        assert message in text and "HTTP 400" in text, (message, text)
        # What cannot be sent at all is said on the page, without a call.
        s.page.fill("#exp-share", "a tenth")
        s.page.click("#exp-start")
        s.page.wait_for_function(
            "() => document.querySelector('#start-result').textContent.includes('Share must be a number')")
        s.shot("ops_experiment_bad_start")
        s.assert_clean()
    finally:
        stop_own_experiments(api, version, started_after)


def test_undo_not_for_me_and_remove_a_like(browser, api):
    """Issue 12: a liked card's "Undo" takes the like back, "Not for me" takes a card out of
    this and every later list, and the recent likes' remove button takes a like back; each
    reaches the API (GET /users/{id}/likes, GET /recommendations)."""
    s = browser()
    open_recs(s)
    s.page.fill("#k", "10")
    submit_and_wait(s, lambda: s.page.click("#new-user"))
    user_id = int(s.page.input_value("#user_id"))
    ids = shown_ids(s)
    assert len(ids) == 10
    first, second, third = ids[:3]

    def api_likes() -> list[int]:
        return [x["movie_id"] for x in api.get(f"/users/{user_id}/likes")["items"]]

    def wait_api(done, what: str) -> None:
        deadline = time.monotonic() + LIKE_VISIBLE_S
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"after {LIKE_VISIBLE_S:.0f} s: {what}")
            time.sleep(0.3)

    like(s, first)
    like(s, second)
    wait_likes_acknowledged(s, [first, second])
    wait_api(lambda: sorted(api_likes()) == sorted([first, second]), "the two likes never reached the API")

    # Undo on a liked card
    card(s, first).locator(".undo-button").click()
    s.page.wait_for_selector(f'#recs-grid .movie-card[data-movie-id="{first}"] .like-button[aria-pressed="false"]')
    s.page.locator("[data-sonner-toast]").filter(has_text="Removed the like").first.wait_for()
    assert s.page.locator(f'#recent-likes .like-row[data-movie-id="{first}"]').count() == 0
    wait_api(lambda: api_likes() == [second], f"the undone like of {first} is still in GET /users/{user_id}/likes")

    # "Not for me": gone from the page at once and from every later list
    card(s, third).locator(".not-interested-button").click()
    s.page.wait_for_selector(f'#recs-grid .movie-card[data-movie-id="{third}"]', state="detached")
    s.page.locator("[data-sonner-toast]").filter(has_text="will not be shown again").first.wait_for()
    wait_api(lambda: third not in ids_of(api.get("/recommendations", user_id=user_id, k=50)),
             f"movie {third} is still recommended after 'Not for me'")
    refetch(s)
    assert third not in shown_ids(s)

    # remove a like from the recent likes list
    row = s.page.locator(f'#recent-likes .like-row[data-movie-id="{second}"]')
    row.wait_for()
    row.locator(".remove-like").click()
    row.wait_for(state="detached")
    wait_api(lambda: api_likes() == [], "the removed like is still in GET /users/{id}/likes")
    s.shot("feedback")
    s.assert_clean()
