"""Reflex state of the recommendations page (the ops page's is in ops_state.py).

It runs on the Reflex backend; each handler calls the API through `api`.

Handlers are async and run the blocking `requests` calls in a thread, so one slow API
call does not stall other browser sessions. State vars are sent to the browser: nothing
secret (the admin key) is ever stored in them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random

import reflex as rx

from . import api, controls, posters

EXAMPLE_USERS = [1, 42, 1000]
NEW_USER_MIN = 100_001
NEW_USER_MAX = 999_999
SIMILAR_K = 6
STRATEGY_TEXT = {
    "personal": "Personal: this user is in the model; newer likes are folded in.",
    "fold_in": "Fold-in: a new user; their taste vector is solved from their likes.",
    "popular": "Popular: no signal for this user yet. Like a few movies to personalise.",
}


@dataclasses.dataclass
class Movie:
    """A movie card as the browser renders it (poster precomputed here)."""

    movie_id: int = 0
    title: str = ""
    full_title: str = ""
    year: str = ""
    genres: str = ""
    initials: str = ""
    poster: str = ""
    liked: bool = False
    pending: bool = False
    # Why it is recommended, in words ("Because you liked ..."), the shares for the tooltip,
    # and the history movies named (comma-separated ids, for tests).
    reasons: str = ""
    reasons_detail: str = ""
    reason_ids: str = ""


@dataclasses.dataclass
class GenreChip:
    """One genre chip: `mode` cycles any -> include -> exclude (controls.NEXT_MODE)."""

    genre: str = ""
    mode: str = "any"
    label: str = ""


def chips_for(modes: dict[str, str]) -> list[GenreChip]:
    return [GenreChip(genre=g, mode=modes.get(g, "any"), label=controls.chip_label(g, modes.get(g, "any")))
            for g in controls.GENRES]


@dataclasses.dataclass
class Like:
    movie_id: int = 0
    title: str = ""
    when: str = ""


def to_movie(item: dict, liked: set[int]) -> Movie:
    title = str(item.get("title") or f"Movie {item.get('movie_id')}")
    genres = [str(g) for g in item.get("genres") or []]
    year = item.get("year")
    reasons = item.get("reasons") or []
    return Movie(
        movie_id=int(item["movie_id"]), title=posters.display_title(title), full_title=title,
        year=str(year) if year else "",
        genres=" · ".join(genres), initials=posters.initials(title),
        poster=posters.background(title, genres), liked=int(item["movie_id"]) in liked,
        reasons=controls.reasons_text(reasons), reasons_detail=controls.reasons_detail(reasons),
        reason_ids=",".join(str(i) for i in controls.reason_ids(reasons)),
    )


def _ago(ts: str, now: dt.datetime) -> str:
    try:
        t = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return str(ts)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    s = max(0, int((now - t).total_seconds()))
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return t.strftime("%Y-%m-%d")


def parse_user_id(text: str) -> int:
    """A positive integer user id, or ValueError with a message saying what to type."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError("User id must be a whole number, e.g. 42.") from None
    if value <= 0:
        raise ValueError("User id must be a positive number, e.g. 42.")
    return value


def parse_k(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError("Number of recommendations must be a whole number from 1 to 100.") from None
    if not 1 <= value <= 100:
        raise ValueError("Number of recommendations must be from 1 to 100.")
    return value


class RecState(rx.State):
    """The recommendations page."""

    user_id_text: str = "42"
    k_text: str = "12"
    user_id: int = 0
    items: list[Movie] = []
    strategy: str = ""
    model_version: str = ""
    loading: bool = False
    error: str = ""
    likes: list[Like] = []
    similar_to: str = ""
    similar: list[Movie] = []
    side_error: str = ""
    # Finished fetches, rendered as data-fetches: tests and the bench wait on it to change.
    fetches: int = 0
    # Set by on_load, i.e. once the page is hydrated and connected to the backend.
    ready: bool = False
    # List controls (controls.py turns them into API parameters).
    chips: list[GenreChip] = chips_for({})
    year_min_text: str = ""
    year_max_text: str = ""
    diversity_text: str = "0"
    # Paging: the API's next_cursor ("" when the listing ended) and whether fewer matched.
    next_cursor: str = ""
    exhausted: bool = False
    loading_more: bool = False
    notice: str = ""
    # What the shown list was asked with: Load more must continue exactly that listing,
    # whatever the fields say now (backend-only: not sent to the browser).
    _filters: controls.Filters = controls.NO_FILTERS
    _k: int = 0

    @rx.var
    def strategy_text(self) -> str:
        return STRATEGY_TEXT.get(self.strategy, "")

    @rx.var
    def exhausted_text(self) -> str:
        return controls.exhausted_text(len(self.items)) if self.exhausted else ""

    @rx.var
    def diversity_label(self) -> str:
        try:
            return f"{controls.parse_diversity(self.diversity_text):.1f}"
        except ValueError:
            return self.diversity_text

    @rx.var
    def filters_active(self) -> bool:
        return (any(c.mode != "any" for c in self.chips) or bool(self.year_min_text.strip())
                or bool(self.year_max_text.strip()) or self.diversity_label != "0.0")

    @rx.var
    def strategy_color(self) -> str:
        return {"personal": "grass", "fold_in": "amber", "popular": "gray"}.get(self.strategy, "gray")

    @rx.event
    def on_load(self):
        self.ready = True

    @rx.event
    def set_user_id_text(self, value: str):
        self.user_id_text = value

    @rx.event
    def set_k_text(self, value: str):
        self.k_text = value

    @rx.event
    async def pick_user(self, user_id: int):
        self.user_id_text = str(user_id)
        async for update in self._fetch():
            yield update

    @rx.event
    async def new_user(self):
        self.user_id_text = str(random.randint(NEW_USER_MIN, NEW_USER_MAX))
        async for update in self._fetch():
            yield update

    @rx.event
    async def submit(self, form_data: dict):
        async for update in self._fetch():
            yield update

    # ---- list controls: each change reloads the first page (once a list is shown)
    @rx.event
    async def cycle_genre(self, genre: str):
        modes = {c.genre: c.mode for c in self.chips}
        modes[genre] = controls.next_mode(modes.get(genre, "any"))
        self.chips = chips_for(modes)
        async for update in self._reload():
            yield update

    @rx.event
    def set_year_min_text(self, value: str):
        self.year_min_text = value

    @rx.event
    def set_year_max_text(self, value: str):
        self.year_max_text = value

    @rx.event
    async def apply_year_min(self, value: str):
        """On blur of the From field (its value comes with the event)."""
        self.year_min_text = str(value)
        async for update in self._apply_years():
            yield update

    @rx.event
    async def apply_year_max(self, value: str):
        self.year_max_text = str(value)
        async for update in self._apply_years():
            yield update

    @rx.event
    async def apply_years_form(self, form_data: dict):
        """Enter in a year field: the form's values, which may be newer than the on_change ones."""
        self.year_min_text = str(form_data.get("year_min", self.year_min_text))
        self.year_max_text = str(form_data.get("year_max", self.year_max_text))
        async for update in self._apply_years():
            yield update

    async def _apply_years(self):
        """Reload only if the range really changed (a blur after Enter must not reload twice)."""
        try:
            wanted = controls.build_filters({}, self.year_min_text, self.year_max_text, "0")
        except ValueError as exc:
            self.error = str(exc)
            self.fetches += 1
            return
        if (wanted.year_min, wanted.year_max) == (self._filters.year_min, self._filters.year_max):
            return
        async for update in self._reload():
            yield update

    @rx.event
    async def set_diversity(self, value: float):
        self.diversity_text = str(value)
        async for update in self._reload():
            yield update

    @rx.event
    async def clear_filters(self):
        self.chips = chips_for({})
        self.year_min_text = self.year_max_text = ""
        self.diversity_text = "0"
        async for update in self._reload():
            yield update

    async def _reload(self):
        if self.user_id:
            async for update in self._fetch():
                yield update

    @rx.event
    async def load_more(self):
        """Append the next page of the shown listing (its next_cursor)."""
        if not self.next_cursor or not self.user_id or self.loading or self.loading_more:
            return
        user_id, k, filters, cursor = self.user_id, self._k, self._filters, self.next_cursor
        self.loading_more, self.error, self.notice = True, "", ""
        yield
        try:
            page = await asyncio.to_thread(api.recommendations, user_id, k, filters, cursor)
        except api.ApiError as exc:
            self.loading_more = False
            notice = controls.cursor_notice(exc.code)
            if notice is None:
                self.error = f"Could not load more: {exc}"
                self.fetches += 1
                return
            # A new model version (or a listing that changed): start again from page one.
            async for update in self._fetch(notice=notice):
                yield update
            return
        shown = {m.movie_id for m in self.items}
        liked = {m.movie_id for m in self.items if m.liked}
        fresh = [to_movie(it, liked) for it in page.get("items", [])]
        keep = set(controls.new_ids(shown, [m.movie_id for m in fresh]))
        self.items = [*self.items, *[m for m in fresh if m.movie_id in keep]]
        self._set_page_meta(page, filters)
        self.loading_more = False
        self.fetches += 1

    def _set_page_meta(self, page: dict, filters: controls.Filters) -> None:
        self.next_cursor = str(page.get("next_cursor") or "")
        self.exhausted = bool(page.get("exhausted")) and filters.filtering
        self.strategy = str(page.get("strategy") or self.strategy)
        self.model_version = str(page.get("model_version") or self.model_version)

    async def _fetch(self, notice: str = ""):
        """The first page for the fields as they are now."""
        try:
            user_id = parse_user_id(self.user_id_text)
            k = parse_k(self.k_text)
            filters = controls.build_filters({c.genre: c.mode for c in self.chips},
                                             self.year_min_text, self.year_max_text,
                                             self.diversity_text)
        except ValueError as exc:
            self.error = str(exc)
            self.fetches += 1
            return
        self.loading, self.error, self.notice = True, "", notice
        if user_id != self.user_id:
            self.items, self.similar, self.likes, self.similar_to = [], [], [], ""
            self.strategy = self.model_version = ""
        self.user_id = user_id
        self.next_cursor, self.exhausted = "", False
        yield
        # Cards first, then likes and similar movies: recommendations never contain a liked
        # movie, so the cards do not need the likes, and the likes call cannot compete with the
        # recommendations call for the API's (few, local) function workers.
        try:
            recs = await asyncio.to_thread(api.recommendations, user_id, k, filters)
        except api.ApiError as exc:
            self.loading, self.error = False, f"Could not get recommendations: {exc}"
            self.items = []
            self.fetches += 1
            return
        self.items = [to_movie(it, set()) for it in recs.get("items", [])]
        self.strategy = str(recs.get("strategy") or "")
        self.model_version = str(recs.get("model_version") or "")
        self._filters, self._k = filters, k
        self._set_page_meta(recs, filters)
        self.loading = False
        self.fetches += 1
        # Likes and similar movies load in a background task, so the next click is not queued
        # behind them (Reflex runs one ordinary handler at a time per browser tab).
        yield RecState.load_side(user_id)

    @rx.event(background=True)
    async def load_side(self, user_id: int):
        """The user's recent likes, then movies similar to the newest one."""
        try:
            data = await asyncio.to_thread(api.user_likes, user_id, 10)
        except api.ApiError as exc:
            async with self:
                if self.user_id == user_id:
                    self.side_error = f"Could not load likes: {exc}"
            return
        async with self:
            if self.user_id != user_id:
                return
            self._set_likes(data)
            newest = self.likes[0] if self.likes else None
        if newest is not None:
            yield RecState.load_similar(user_id, newest.movie_id, newest.title)

    @rx.event(background=True)
    async def load_similar(self, user_id: int, movie_id: int, title: str):
        """ "Because you liked <title>": GET /movies/{id}/similar."""
        try:
            data = await asyncio.to_thread(api.similar, movie_id, SIMILAR_K)
        except api.ApiError as exc:
            async with self:
                if self.user_id == user_id:
                    self.side_error = f"Could not load similar movies: {exc}"
            return
        async with self:
            if self.user_id != user_id:
                return
            liked = {x.movie_id for x in self.likes}
            self.similar_to = title
            self.similar = [to_movie(it, liked) for it in data.get("items", [])]

    def _set_likes(self, data: dict) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self.likes = [Like(movie_id=int(x["movie_id"]),
                           title=posters.display_title(str(x.get("title", ""))),
                           when=_ago(x.get("ts", ""), now)) for x in data.get("items", [])]
        self.side_error = ""

    def _mark(self, movie_id: int, liked: bool, pending: bool) -> str:
        title = ""
        for name in ("items", "similar"):
            cards = getattr(self, name)
            new = []
            for m in cards:
                if m.movie_id == movie_id:
                    m = dataclasses.replace(m, liked=liked, pending=pending)
                    title = m.title
                new.append(m)
            setattr(self, name, new)
        return title

    @rx.event
    async def like(self, movie_id: int):
        if not self.user_id or any(m.movie_id == movie_id and m.liked
                                   for m in [*self.items, *self.similar]):
            return
        user_id = self.user_id
        title = self._mark(movie_id, liked=True, pending=True)  # optimistic
        yield
        try:
            await asyncio.to_thread(api.like, user_id, movie_id)
        except api.ApiError as exc:
            self._mark(movie_id, liked=False, pending=False)
            self.error = f"Could not like “{title}”: {exc}"
            yield rx.toast.error(f"Like failed: {exc}", id=f"like-{movie_id}")
            return
        self._mark(movie_id, liked=True, pending=False)
        self.error = ""
        self.likes = [Like(movie_id=movie_id, title=title, when="just now"),
                      *[x for x in self.likes if x.movie_id != movie_id]][:10]
        yield rx.toast.success(f"Liked “{title}”", id=f"like-{movie_id}", duration=2500)
        yield RecState.load_similar(user_id, movie_id, title)

    @rx.event
    async def unlike(self, movie_id: int):
        """Undo a like (a card's "Undo", the likes list's remove): POST /feedback type unlike."""
        if not self.user_id:
            return
        user_id = self.user_id
        before = list(self.likes)
        gone = next((x for x in before if x.movie_id == movie_id), None)
        title = self._mark(movie_id, liked=False, pending=False) or (gone.title if gone else f"movie {movie_id}")
        self.likes = [x for x in before if x.movie_id != movie_id]  # optimistic
        yield
        try:
            await asyncio.to_thread(api.feedback, user_id, movie_id, "unlike")
        except api.ApiError as exc:
            self.likes = before
            self._mark(movie_id, liked=True, pending=False)
            self.error = f"Could not remove the like of “{title}”: {exc}"
            yield rx.toast.error(f"Undo failed: {exc}", id=f"unlike-{movie_id}")
            return
        self.error = ""
        yield rx.toast.success(f"Removed the like of “{title}”", id=f"unlike-{movie_id}", duration=2500)

    @rx.event
    async def not_interested(self, movie_id: int):
        """"Not for me": the card leaves the lists; POST /feedback type not_interested."""
        if not self.user_id:
            return
        user_id = self.user_id
        items, similar = list(self.items), list(self.similar)
        title = next((m.title for m in [*items, *similar] if m.movie_id == movie_id), f"movie {movie_id}")
        self.items = [m for m in items if m.movie_id != movie_id]  # optimistic
        self.similar = [m for m in similar if m.movie_id != movie_id]
        yield
        try:
            await asyncio.to_thread(api.feedback, user_id, movie_id, "not_interested")
        except api.ApiError as exc:
            self.items, self.similar = items, similar
            self.error = f"Could not hide “{title}”: {exc}"
            yield rx.toast.error(f"Not for me failed: {exc}", id=f"ni-{movie_id}")
            return
        self.error = ""
        yield rx.toast.success(f"“{title}” will not be shown again", id=f"ni-{movie_id}", duration=2500)
