"""Downloads with a checksum and a timeout, and archive extraction that is atomic and safe."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from irad.errors import DataError
from irad.utils.io import atomic_writer, file_digest

USER_AGENT = "irad (https://github.com/irad; dataset download)"
CHUNK = 1 << 20


def _expected(sha256: str | None, md5: str | None) -> tuple[str, str] | None:
    """The strongest checksum we know: sha256 if given, else md5."""
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def verify_file(
    path: str | os.PathLike[str], *, sha256: str | None = None, md5: str | None = None
) -> None:
    """Raise :class:`~irad.errors.DataError` unless ``path`` has the expected checksum."""
    want = _expected(sha256, md5)
    if want is None:
        return
    algorithm, expected = want
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(
            f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}; the file "
            "is corrupt, truncated or not the official one: delete it and copy or download it again"
        )


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, checking its checksum.

    The bytes go to a temporary file next to ``dest`` that is renamed only once the checksum
    matched, so ``dest`` is either complete and verified or absent. On a checksum mismatch the
    bad download is deleted and :class:`~irad.errors.DataError` names expected and actual sums.
    ``timeout`` (seconds) bounds every network wait, so a dead network fails fast instead of
    hanging. ``file://`` URLs work too.

    Example:
        >>> url = "https://example.org/data.tar.gz"
        >>> download_url(url, "data.tar.gz", sha256="...")  # doctest: +SKIP
    """
    dest = Path(dest)
    want = _expected(sha256, md5)
    hasher = hashlib.new(want[0] if want else "sha256")
    try:
        with atomic_writer(dest, suffix=".part") as out:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                _receive(response, out, hasher, url, dest.name, progress)
            # Raising here removes the download: dest is either complete and verified or absent.
            if want is not None and hasher.hexdigest() != want[1]:
                raise DataError(
                    f"checksum mismatch for {url}: expected {want[0]} {want[1]}, got "
                    f"{hasher.hexdigest()}; the download was deleted. Try again; if it keeps "
                    "failing, the server copy changed or a proxy altered it"
                )
    except DataError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        # URLError wraps DNS failures and refused connections; TimeoutError is an OSError.
        reason = getattr(err, "reason", err)
        if isinstance(err, OSError) and err.filename is not None:
            raise DataError(f"cannot write the download to {dest.parent}: {err}") from err
        raise DataError(f"could not download {url}: {reason}") from err
    return dest


def _receive(
    response: Any, out: IO[bytes], hasher: Any, url: str, name: str, progress: bool
) -> None:
    """Copy the response body to ``out`` with a progress bar, hashing it on the way."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    received = 0
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"download {name}",
        disable=not progress,
        leave=False,
    ) as bar:
        while block := response.read(CHUNK):
            out.write(block)
            hasher.update(block)
            received += len(block)
            bar.update(len(block))
    if total is not None and received != total:
        raise DataError(f"download of {url} stopped after {received} of {total} bytes")


def _safe_members(archive: tarfile.TarFile, archive_path: Path) -> list[tarfile.TarInfo]:
    """Refuse archives whose members could write outside the target folder."""
    members = archive.getmembers()
    for m in members:
        name = Path(m.name)
        if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()):
            raise DataError(
                f"{archive_path}: refusing to extract unsafe member {m.name!r} "
                "(absolute path, '..', link or device)"
            )
    return members


def extract_tarball(archive_path: str | os.PathLike[str], folder: str, cache_dir: Path) -> Path:
    """Extract ``folder`` from a tar archive into ``cache_dir/folder`` atomically.

    The archive is unpacked into a temporary folder inside ``cache_dir`` and ``folder`` is then
    renamed into place, so an interrupted extraction never leaves a half-filled folder that a
    later run would trust.
    """
    archive_path = Path(archive_path)
    target = cache_dir / folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive_path) as archive:
                members = _safe_members(archive, archive_path)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.10.12 / 3.11.4: members were checked above
                    archive.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(
                f"{archive_path}: cannot extract ({type(err).__name__}: {err}); the archive is "
                "corrupt: delete it and download it again"
            ) from err
        extracted = tmp / folder
        if not extracted.is_dir():
            found = sorted(p.name for p in tmp.iterdir())
            raise DataError(f"{archive_path}: expected a folder {folder!r} inside, found {found}")
        if not target.exists():
            os.replace(extracted, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
