"""Download raw dataset files: resumable (HTTP Range), checksummed, with a progress bar.

``fetch(resource, folder)`` returns ``folder/resource.filename``, downloading it first if it is
not there. A broken-off download leaves ``<file>.part`` behind and the next call resumes it
where it stopped (``Range: bytes=N-``; a server that ignores the header sends the whole file
again). Every finished file is checked against its SHA-256: the one the :class:`Resource`
pins, else the one recorded in ``folder/SHA256SUMS`` the first time the file was fetched
(trust on first use: none of the dataset sites we support publishes SHA-256 sums, so lemur
records them and any later change of the file is caught).

When no host can be reached, :class:`DownloadError` says so and tells the user where to put
the files by hand. Only the standard library and tqdm are used.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

CHECKSUM_FILE = "SHA256SUMS"
_CHUNK = 1 << 20
_USER_AGENT = "lemur-data/1 (+https://github.com/; dataset converter)"


class DownloadError(RuntimeError):
    """A file could not be downloaded or failed its checksum; the message says what to do."""


@dataclass(frozen=True)
class Resource:
    """One downloadable file of a dataset."""

    url: str
    """Where to get it."""
    filename: str
    """Name of the file in the raw folder."""
    sha256: str | None = None
    """Expected SHA-256 (hex); None = trust on first use (recorded in SHA256SUMS)."""
    size: str = ""
    """Rough size for messages, e.g. '52 MB'."""
    mirrors: tuple[str, ...] = field(default_factory=tuple)
    """Other URLs tried in order when ``url`` fails."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUM_FILE
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def _record(folder: Path, filename: str, digest: str) -> None:
    sums = _recorded(folder)
    sums[filename] = digest
    (folder / CHECKSUM_FILE).write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))


def verify(path: Path, expected: str | None = None, log=print) -> str:
    """Check ``path`` against ``expected`` or the folder's SHA256SUMS (recording it if new).

    A mismatch raises :class:`DownloadError` naming the file; the file is left in place
    (it may be a newer release: delete it to download again, or fix SHA256SUMS).
    """
    digest = sha256_of(path)
    recorded = _recorded(path.parent).get(path.name)
    want = expected or recorded
    if want is None:
        _record(path.parent, path.name, digest)
        log(
            f"  {path.name}: SHA-256 {digest} recorded in {path.parent / CHECKSUM_FILE} "
            "(no published checksum; later runs verify against it)"
        )
        return digest
    if digest != want.lower():
        source = "the pinned checksum" if expected else f"the checksum recorded in {path.parent / CHECKSUM_FILE}"
        raise DownloadError(
            f"{path}: SHA-256 {digest} does not match {source} ({want}); the file is corrupt or "
            f"a different release: delete it to download it again"
        )
    if expected and recorded is None:
        _record(path.parent, path.name, digest)
    return digest


def _reason(err: BaseException) -> str:
    if isinstance(err, HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}"


def _download(url: str, dest: Path, progress: bool, timeout: float) -> None:
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        if err.code == 416 and have:  # the .part already holds the whole file
            part.replace(dest)
            return
        raise
    with response:
        resumed = have > 0 and getattr(response, "status", 200) == 206
        if have and not resumed:
            have = 0  # the server ignored Range: start again
        length = response.headers.get("Content-Length")
        total = int(length) + have if length and length.isdigit() else None
        from tqdm import tqdm

        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                file=sys.stderr,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: connection closed after {part.stat().st_size} of {total} bytes; "
            f"run the command again to resume ({part})"
        )
    part.replace(dest)


def fetch(resource: Resource, folder: str | Path, *, progress: bool = True, timeout: float = 30.0, log=print) -> Path:
    """``folder/resource.filename``, downloaded (resuming a ``.part``) and checksum-verified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / resource.filename
    if dest.exists():
        verify(dest, resource.sha256, log=log)
        return dest
    errors = []
    for url in (resource.url, *resource.mirrors):
        log(f"downloading {resource.filename}{f' ({resource.size})' if resource.size else ''} from {url}")
        try:
            _download(url, dest, progress, timeout)
            break
        except (TimeoutError, URLError, OSError, ConnectionError) as err:  # HTTPError is a URLError
            errors.append(f"  {url}: {_reason(err)}")
    else:
        tried = "\n".join(errors)
        raise DownloadError(
            f"could not download {resource.filename}; tried:\n{tried}\n"
            f"This machine seems to be offline, or these hosts are blocked. Download the file by hand "
            f"({resource.url}) on a machine with access, put it in {folder}/ and run the same command again "
            f"without --download (a partial {resource.filename}.part there is resumed when the host is reachable)."
        )
    verify(dest, resource.sha256, log=log)
    return dest


def fetch_small(url: str, timeout: float = 10.0) -> bytes:
    """The bytes at ``url`` (http(s) or file://), for small files such as cover images; raises on any failure."""
    with urlopen(Request(url, headers={"User-Agent": _USER_AGENT}), timeout=timeout) as response:
        return response.read()
