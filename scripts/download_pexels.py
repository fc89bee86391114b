"""Download photos through the Pexels API (https://www.pexels.com/api/documentation/).

    export PEXELS_API_KEY=...                      # free key: https://www.pexels.com/api/new/
    python scripts/download_pexels.py data/pexels/photos --query nature city people animals --count 5000
    python scripts/download_pexels.py data/pexels/photos --query nature --count 6000   # resumes: adds 1,000 more
    python -m src.data.prepare data/pexels/photos data/pexels/store --max-side 1500

Queries are searched in turn, a page of each at a time, until ``--count`` distinct photos are in the
folder. Resumable: photos already in the folder count and are not fetched again. Each photo is
written to ``<id>.<ext>.part`` and renamed once complete, so a final name always holds a whole file;
``manifest.jsonl`` gets one line per photo (id, page URL, photographer, size, file, query).
Waits out the API's rate limit (``X-Ratelimit-Remaining`` / ``X-Ratelimit-Reset``, 429 +
``Retry-After``) and retries transient failures (5xx, resets, timeouts, truncated bodies) with
exponential backoff. Errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

API_URL = "https://api.pexels.com/v1"
SIZES = ("original", "large2x", "large", "medium")
MANIFEST = "manifest.jsonl"


class DownloadError(Exception):
    """A failure the user must fix (no network, bad key, ...): printed as one line."""


class Transient(Exception):
    """A failure worth retrying; ``wait`` is what the server asked for, if anything."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class PexelsClient:
    """HTTP with the API's manners: rate limit honoured, transient errors retried with backoff."""

    def __init__(
        self,
        key: str,
        base_url: str = API_URL,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_wait: float = 3600.0,
    ) -> None:
        self.key = key
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.max_wait = max_wait
        self.resume_at = 0.0  # when the API's quota refills, once a response said it is used up

    def _wait_for_quota(self) -> None:
        wait = self.resume_at - self.clock()
        if wait > 0:
            if wait > self.max_wait:
                raise DownloadError(f"Pexels rate limit used up until {time.ctime(self.resume_at)}; run again then (it resumes)")
            print(f"rate limit reached: waiting {wait:.0f} s", file=sys.stderr)
            self.sleep(wait)

    def _note_rate_limit(self, headers: Any) -> None:
        remaining, reset = headers.get("X-Ratelimit-Remaining"), headers.get("X-Ratelimit-Reset")
        if remaining is not None and reset is not None and remaining.strip() == "0":
            self.resume_at = float(reset)

    def _once(self, url: str, api: bool) -> bytes:
        if api:
            self._wait_for_quota()
        req = urllib.request.Request(
            url, headers={"User-Agent": "srlab-download/1"} | ({"Authorization": self.key} if api else {})
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                if api:
                    self._note_rate_limit(resp.headers)
                body = resp.read()  # raises IncompleteRead when the body is shorter than Content-Length
                length = resp.headers.get("Content-Length")
                if length is not None and len(body) != int(length):
                    raise Transient(f"{url}: body cut short ({len(body)} of {length} bytes)")
                return body
        except urllib.error.HTTPError as e:
            if e.code == 429:
                if api:
                    self._note_rate_limit(e.headers)
                retry_after = e.headers.get("Retry-After")
                wait = float(retry_after) if retry_after and retry_after.isdigit() else max(0.0, self.resume_at - self.clock())
                raise Transient(f"{url}: HTTP 429 rate limited", wait) from None
            if e.code >= 500 or e.code == 408:
                raise Transient(f"{url}: HTTP {e.code}") from None
            if e.code in (401, 403) and api:
                raise DownloadError(f"Pexels refused the API key in PEXELS_API_KEY (HTTP {e.code})") from None
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.gaierror):  # no DNS: no network here, retrying will not help
                host = urllib.parse.urlsplit(url).hostname
                raise DownloadError(f"cannot reach {host}: no network? ({e.reason})") from None
            raise Transient(f"{url}: {e.reason}") from None
        except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
            raise Transient(f"{url}: {type(e).__name__}: {e}") from None

    def get(self, url: str, api: bool = False) -> bytes:
        """The body of ``url``, after up to ``retries`` retries of transient failures."""
        for attempt in range(self.retries + 1):
            try:
                return self._once(url, api)
            except Transient as e:
                if attempt == self.retries:
                    raise DownloadError(f"{e} (gave up after {self.retries + 1} tries)") from None
                wait = e.wait if e.wait is not None and e.wait > 0 else self.backoff * 2**attempt
                print(f"{e}; retrying in {wait:.1f} s", file=sys.stderr)
                self.sleep(min(wait, self.max_wait))
        raise AssertionError("unreachable")

    def search(self, query: str, page: int, per_page: int) -> dict[str, Any]:
        qs = urllib.parse.urlencode({"query": query, "page": page, "per_page": per_page})
        url = f"{self.base_url}/search?{qs}"
        for attempt in range(self.retries + 1):
            body = self.get(url, api=True)
            try:
                return json.loads(body)
            except ValueError:  # a cut JSON body without Content-Length: retry it like any truncation
                if attempt == self.retries:
                    raise DownloadError(f"{url}: not JSON after {self.retries + 1} tries") from None
                self.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")


def read_manifest(folder: Path) -> dict[int, dict[str, Any]]:
    """Photos already downloaded, by id. A line cut by a kill is dropped (its photo is re-listed)."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    text = path.read_text()
    lines = text.splitlines()
    if text and not text.endswith("\n"):
        lines = lines[:-1]
        path.write_text("".join(line + "\n" for line in lines))  # drop the torn line before appending
    out = {}
    for line in lines:
        rec = json.loads(line)
        if (folder / rec["file"]).exists():
            out[rec["id"]] = rec
    return out


def _photo_pages(client: PexelsClient, queries: list[str], per_page: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(query, photo) from each query's pages in turn until every query runs out."""
    pages = dict.fromkeys(queries, 1)
    while pages:
        for query in list(pages):
            result = client.search(query, pages[query], per_page)
            photos = result.get("photos") or []
            for photo in photos:
                yield query, photo
            if not photos or not result.get("next_page"):
                del pages[query]
            else:
                pages[query] += 1


def _suffix(url: str) -> str:
    ext = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    return ext if ext in (".jpg", ".jpeg", ".png", ".webp") else ".jpg"


def download(
    client: PexelsClient, folder: Path, queries: list[str], count: int, size: str = "large2x", per_page: int = 80
) -> dict[str, int]:
    """Bring ``folder`` up to ``count`` photos; returns how many were fetched and how many were there."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in folder.glob("*.part"):
        part.unlink()  # a download a kill interrupted
    have = read_manifest(folder)
    before = len(have)
    if len(have) >= count:
        return {"downloaded": 0, "total": len(have)}
    with open(folder / MANIFEST, "a") as manifest:
        for query, photo in _photo_pages(client, queries, per_page):
            pid = int(photo["id"])
            if pid in have:
                continue
            url = photo["src"][size]
            name = f"{pid}{_suffix(url)}"
            final = folder / name
            if not final.exists():  # present but unlisted: a kill came between rename and manifest line
                tmp = folder / f"{name}.part"
                body = client.get(url)
                with open(tmp, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())  # whole on disk before it takes the final name
                os.replace(tmp, final)
            rec = {
                "id": pid,
                "url": photo.get("url"),
                "photographer": photo.get("photographer"),
                "photographer_url": photo.get("photographer_url"),
                "width": photo.get("width"),
                "height": photo.get("height"),
                "size": size,
                "src": url,
                "bytes": final.stat().st_size,
                "file": name,
                "query": query,
            }
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            have[pid] = rec
            if len(have) >= count:
                break  # before asking for another page
    return {"downloaded": len(have) - before, "total": len(have)}


def main(
    argv: list[str] | None = None, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time
) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="where photos and manifest.jsonl go (resumed when it exists)")
    ap.add_argument("--query", nargs="+", required=True, help="search terms, one query each")
    ap.add_argument("--count", type=int, required=True, help="photos wanted in the folder in all")
    ap.add_argument("--size", choices=SIZES, default="large2x", help="which rendition (default large2x, ~1880x1300)")
    ap.add_argument("--base-url", default=API_URL, help=f"API root (default {API_URL})")
    ap.add_argument("--per-page", type=int, default=80, help="results per search page (API maximum 80)")
    ap.add_argument("--retries", type=int, default=5)
    ap.add_argument("--backoff", type=float, default=1.0, help="first retry wait in s; doubles each retry")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in s")
    args = ap.parse_args(argv)
    key = os.environ.get("PEXELS_API_KEY", "").strip()
    try:
        if not key:
            raise DownloadError("set PEXELS_API_KEY to your Pexels API key (free: https://www.pexels.com/api/new/)")
        if args.count < 1 or not 1 <= args.per_page <= 80:
            raise DownloadError("--count must be at least 1 and --per-page between 1 and 80")
        client = PexelsClient(key, args.base_url, args.retries, args.backoff, args.timeout, sleep=sleep, clock=clock)
        result = download(client, args.folder, args.query, args.count, args.size, args.per_page)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    short = "" if result["total"] >= args.count else f" (the queries ran out before {args.count})"
    print(f"{args.folder}: {result['downloaded']} photos downloaded, {result['total']} in all{short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
