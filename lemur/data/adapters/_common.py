"""What the adapters share: finding raw files (in a folder, below it, or inside a downloaded
zip), the common CLI arguments, downloading, and cover images (verified, broken ones counted)."""

from __future__ import annotations

import contextlib
import gzip
import io
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from lemur.data.download import DownloadError, Resource, fetch, fetch_small
from lemur.data.schema import SchemaError


class RawFiles:
    """Raw files by base name, looked up in ``root``, its sub-folders and the zip archives there.

    ``find(name)`` returns every match (several splits of one dataset, e.g. MIND's
    train/ and dev/, each hold a ``behaviors.tsv``), in a stable order.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SchemaError(
                self.root, None, "raw data folder not found (pass --download to fetch the dataset into it)"
            )

    def find(self, name: str) -> list[str]:
        """Locations (``path`` or ``archive.zip!member``) of the files called ``name``."""
        found = [str(p) for p in sorted(self.root.rglob(name)) if p.is_file()]
        for archive in sorted(self.root.rglob("*.zip")):
            try:
                with zipfile.ZipFile(archive) as zf:
                    found += [
                        f"{archive}!{m}"
                        for m in sorted(zf.namelist())
                        if m.rsplit("/", 1)[-1] == name and not m.startswith("__MACOSX")
                    ]
            except zipfile.BadZipFile as err:
                raise SchemaError(
                    archive, None, f"not a readable zip archive ({err}); delete it and download again"
                ) from err
        return found

    def require(self, name: str, hint: str) -> list[str]:
        found = self.find(name)
        if not found:
            raise SchemaError(
                self.root / name, None, f"not found in {self.root} (nor below it, nor in a zip there); {hint}"
            )
        return found


def read_bytes(location: str) -> bytes:
    """The bytes of a location from :meth:`RawFiles.find` (gunzipped if it ends in .gz)."""
    if "!" in location:
        archive, member = location.split("!", 1)
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(member)
    else:
        data = Path(location).read_bytes()
    return gzip.decompress(data) if location.endswith(".gz") else data


@contextlib.contextmanager
def open_binary(location: str) -> Iterator[BinaryIO]:
    """A binary stream of a location (a file, or a zip member read without extracting it)."""
    if "!" in location:
        archive, member = location.split("!", 1)
        with zipfile.ZipFile(archive) as zf, zf.open(member) as stream:
            yield stream
    else:
        with open(location, "rb") as stream:
            yield stream


def open_lines(location: str) -> Iterator[str]:
    """Text lines of a location, streamed (plain, .gz or inside a zip)."""
    if "!" in location:
        archive, member = location.split("!", 1)
        with zipfile.ZipFile(archive) as zf, zf.open(member) as raw:
            stream = gzip.open(raw) if member.endswith(".gz") else raw
            yield from io.TextIOWrapper(stream, encoding="utf-8-sig")
    else:
        opener = gzip.open if location.endswith(".gz") else open
        with opener(location, "rt", encoding="utf-8-sig") as f:
            yield from f


def add_common_arguments(parser, resources_help: str) -> None:
    parser.add_argument(
        "--raw", required=True, help="folder with the raw files (or the downloaded archives); --download fills it"
    )
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--download", action="store_true", help=f"download the raw files into --raw first ({resources_help})"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing dataset in --out")


def download_all(resources: Iterable[Resource], raw: str | Path, log=print) -> None:
    """Fetch every resource into ``raw``; if some fail, one error lists them all (URLs to get by hand)."""
    failed = []
    for resource in resources:
        try:
            fetch(resource, raw, log=log)
        except DownloadError as err:
            failed.append((resource, err))
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        listing = "\n".join(f"  {r.filename}: {r.url}" for r, _ in failed)
        raise DownloadError(f"could not download {len(failed)} files:\n{listing}\nfirst failure: {failed[0][1]}")


def verified_image(data: bytes) -> bool:
    """True when ``data`` decodes as an image (PIL ``verify``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def save_images(
    sources: dict[int, object], out: Path, folder: str = "images", workers: int = 8, log=print
) -> tuple[dict[int, str], dict[str, int]]:
    """Write each document's cover to ``out/folder/<doc_id>.jpg`` and return ``(doc_id -> relative path, counts)``.

    ``sources`` maps a doc_id to a URL (str: http(s)/file), to a callable returning the bytes, or to
    None (no image). A link that fails or bytes that do not decode leave the document without an
    image; they are counted (``broken``) and the first few are listed.
    """
    from tqdm import tqdm

    target = out / folder
    target.mkdir(parents=True, exist_ok=True)
    counts = {"with_image": 0, "broken": 0, "missing": 0}
    broken_examples: list[str] = []

    def load(item):
        doc_id, source = item
        if source is None:
            return doc_id, None, "missing"
        try:
            data = fetch_small(source) if isinstance(source, str) else source()
        except Exception as err:  # any failure of one image only costs that image
            return doc_id, None, f"{source}: {type(err).__name__}"
        if data is None:
            return doc_id, None, "missing"
        if not verified_image(data):
            return doc_id, None, f"{source if isinstance(source, str) else doc_id}: not a decodable image"
        (target / f"{doc_id}.jpg").write_bytes(data)
        return doc_id, f"{folder}/{doc_id}.jpg", None

    paths: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for doc_id, path, problem in tqdm(
            pool.map(load, sources.items()), total=len(sources), desc="cover images", unit="img"
        ):
            if path is not None:
                paths[doc_id] = path
                counts["with_image"] += 1
            elif problem == "missing":
                counts["missing"] += 1
            else:
                counts["broken"] += 1
                if len(broken_examples) < 5:
                    broken_examples.append(problem)
    if counts["broken"]:
        log(
            f"  {counts['broken']:,} broken cover images (those documents have no image), e.g.: "
            + "; ".join(broken_examples)
        )
    log(f"  {counts['with_image']:,} cover images written to {target}")
    return paths, counts
