"""Download a file into a cache: resumable, retried, checksummed (`archives` unpacks it)."""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from brainseg.errors import BrainsegError
from brainseg.io.hashing import file_digests

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _RetryableError(Exception):
    """A transient failure (network, timeout, truncated body, 5xx/429): try again."""


def fetch(url: str, cache_dir: Path, sha256: str | None = None, *, md5: str | None = None,
          size: int | None = None, name: str | None = None, timeout: float = 30.0,
          retries: int = 4, backoff: float = 1.0, chunk_size: int = 1 << 20) -> Path:
    """Download `url` into `cache_dir` and return the verified file's path.

    The file is cached as `cache_dir/<name>` (default: the last URL path component);
    while downloading it is `<name>.part`, which a later attempt (or call) resumes with a
    `Range` request. Only a file that passed its checks is ever renamed to its final name.

    Args:
        url: An http(s) URL.
        cache_dir: Folder of the cache (created if missing).
        sha256: Expected hex digest; when None the computed digest is logged at WARNING.
        md5: Expected MD5 hex digest, checked only when `sha256` is None (some datasets
            publish only an MD5, e.g. the Decathlon's); the SHA-256 is then logged to record.
        size: Expected size in bytes, checked before the digest when given.
        name: File name in the cache (no folder part); None for the URL's last component.
        timeout: Socket timeout in seconds of each connect and each read.
        retries: Number of retries after the first attempt on transient failures.
        backoff: Retry `k` (from 0) waits `backoff * 2**k` seconds.
        chunk_size: Bytes read per chunk while streaming.

    Returns:
        Path of the verified file in the cache.

    Raises:
        BrainsegError: Bad URL, size or checksum, HTTP 4xx, or transient failures outlasting
            retries. A file that fails its size or checksum is deleted.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise BrainsegError(f"{url}: malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BrainsegError(f"{url}: not an http(s) URL")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.fullmatch(sha256):
            raise BrainsegError(f"{url}: sha256 {sha256!r} is not 64 hexadecimal digits")
    if md5 is not None:
        md5 = md5.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise BrainsegError(f"{url}: md5 {md5!r} is not 32 hexadecimal digits")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if name is not None and (_bad_name(name) or "/" in name):
        raise BrainsegError(f"{url}: cache file name {name!r} is not a plain file name")
    name = name or _cache_name(parts.path)
    final = cache_dir / name
    if final.is_file() and _verify(url, final, sha256, md5, size, raise_on_mismatch=False):
        log.info("%s: using cached %s", url, final)
        return final
    part = cache_dir / f"{name}.part"
    _download_with_retries(url, part, timeout=timeout, retries=retries, backoff=backoff,
                           chunk_size=chunk_size)
    _verify(url, part, sha256, md5, size, raise_on_mismatch=True)
    os.replace(part, final)
    log.info("%s: saved %s", url, final)
    return final


def _cache_name(url_path: str) -> str:
    name = urllib.parse.unquote(url_path).rsplit("/", 1)[-1]
    return "download" if _bad_name(name) else name


def _bad_name(name: str) -> bool:
    return name in ("", ".", "..") or "\x00" in name or "\\" in name


def _verify(url: str, path: Path, sha256: str | None, md5: str | None, size: int | None,
            raise_on_mismatch: bool) -> bool:
    """Check `path` against the size (when given), then the SHA-256 (or, without one, the MD5).

    A file that fails is deleted; with `raise_on_mismatch` the failure is an error.
    Without a SHA-256 the computed one is logged, to be recorded in params.
    """
    actual_size = path.stat().st_size
    actual_sha, actual_md5 = (None, None) if size is not None and actual_size != size \
        else file_digests(path, "sha256", "md5")
    kind, expected, actual = ("sha256", sha256, actual_sha) if sha256 else ("md5", md5, actual_md5)
    if size is not None and actual_size != size:
        problem = f"size mismatch: expected {size} bytes, got {actual_size}"
    elif expected is not None and actual != expected:
        problem = f"{kind} mismatch: expected {expected}, got {actual}"
    else:
        problem = None
    if problem is not None:
        path.unlink(missing_ok=True)
        if raise_on_mismatch:
            raise BrainsegError(f"{url}: {problem}")
        log.warning("%s: cached %s fails its check (%s); downloading again", url, path, problem)
        return False
    if sha256 is None:
        log.warning("%s: no sha256 given; its sha256 is %s: record it in params "
                    "(download.sha256)", url, actual_sha)
    return True


def _download_with_retries(url: str, part: Path, *, timeout: float, retries: int,
                           backoff: float, chunk_size: int) -> None:
    """Call `_download_once` until it succeeds, sleeping `backoff * 2**attempt` in between."""
    retries = max(retries, 0)
    for attempt in range(retries + 1):
        try:
            _download_once(url, part, timeout, chunk_size)
            return
        except _RetryableError as exc:
            if attempt == retries:
                raise BrainsegError(f"{url}: {exc}; gave up after {retries} retries") from None
            delay = backoff * 2**attempt
            log.warning("%s: %s; retry %d/%d in %.2f s", url, exc, attempt + 1, retries, delay)
            time.sleep(delay)


def _describe(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout} s"
    return f"connection failed ({type(reason).__name__}: {reason})"


def _download_once(url: str, part: Path, timeout: float, chunk_size: int) -> None:
    """One request, resuming from `part` if present; transient failures are retryable."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            _check_unsatisfied_range(exc.headers.get("Content-Range", ""), part, offset)
            return
        if exc.code == 429 or exc.code >= 500:
            raise _RetryableError(f"HTTP {exc.code} {exc.reason}") from exc
        raise BrainsegError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _RetryableError(_describe(exc, timeout)) from exc
    with response:
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != offset:
                part.unlink(missing_ok=True)
                raise _RetryableError("server answered an unexpected range; starting over")
            total = None if match[3] == "*" else int(match[3])
        else:
            if offset:
                log.info("%s: server ignored the range request; starting over", url)
            offset, total = 0, None
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else total
        _stream(response, part, offset, total or expected, expected, chunk_size, timeout)


def _check_unsatisfied_range(content_range: str, part: Path, offset: int) -> None:
    """After a 416 the part is complete, unless the server says the file has another size."""
    match = _UNSATISFIED_RANGE.match(content_range)
    if match and int(match[1]) != offset:
        part.unlink(missing_ok=True)
        raise _RetryableError(f"partial file is {offset} bytes but the file has {match[1]}")
    log.info("%s: already complete (%d bytes)", part, offset)


def _stream(response: http.client.HTTPResponse, part: Path, offset: int, total: int | None,
            expected: int | None, chunk_size: int, timeout: float) -> None:
    """Append (or write, when `offset` is 0) the body to `part`; short bodies are retryable."""
    written = offset
    with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.stem) as bar:
        while True:
            try:
                chunk = response.read(chunk_size)
            except http.client.IncompleteRead as exc:
                fh.write(exc.partial)  # keep what came: the retry resumes after it
                raise _RetryableError("truncated body (connection closed early)") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise _RetryableError(_describe(exc, timeout)) from exc
            if not chunk:
                break
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    if expected is not None and written < expected:
        raise _RetryableError(f"truncated body: got {written} of {expected} bytes")
