"""scripts/download_pexels.py against a local fake of the Pexels API (search, pages, 429, 500, cut bodies)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_pexels.py"
KEY = "test-key"

spec = importlib.util.spec_from_file_location("download_pexels", SCRIPT)
dl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dl)


class FakePexels:
    """Serves ``/v1/search`` like the API (JSON pages, ``next_page``, rate-limit headers) and ``/img/<id>.jpeg``.

    ``faults`` maps a request key (``search:<query>:<page>`` or ``img:<id>``) to the failures its
    first requests get, in order: ``429``, ``500``, ``cut`` (body shorter than Content-Length).
    """

    def __init__(self, catalog: dict[str, list[int]], faults: dict[str, list[str]]) -> None:
        self.catalog = catalog
        self.faults = {k: list(v) for k, v in faults.items()}
        self.hits: Counter[str] = Counter()
        self.photo_bytes = {i: f"photo {i} ".encode() * (50 + i) for ids in catalog.values() for i in ids}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def photo(self, i: int) -> dict:
        src = f"{self.base}/img/{i}.jpeg"
        return {
            "id": i,
            "width": 1000 + i,
            "height": 700,
            "url": f"https://www.pexels.com/photo/p-{i}/",
            "photographer": f"Ph {i}",
            "photographer_url": f"https://www.pexels.com/@ph{i}",
            "src": {
                "original": src,
                "large2x": src + "?dpr=2&h=650&w=940",
                "large": src + "?h=650&w=940",
                "medium": src + "?h=350",
            },
        }

    def send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], cut: bool = False) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            h.close_connection = True

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        limits = {
            "X-Ratelimit-Limit": "20000",
            "X-Ratelimit-Remaining": "19999",
            "X-Ratelimit-Reset": str(int(time.time()) + 3600),
        }
        if url.path == "/v1/search":
            if h.headers.get("Authorization") != KEY:
                return self.send(h, 401, b'{"error": "unauthorized"}', {})
            q = urllib.parse.parse_qs(url.query)
            query, page, per_page = q["query"][0], int(q["page"][0]), int(q["per_page"][0])
            key = f"search:{query}:{page}"
            ids = self.catalog.get(query, [])
            chunk = ids[(page - 1) * per_page : page * per_page]
            body = {"page": page, "per_page": per_page, "total_results": len(ids), "photos": [self.photo(i) for i in chunk]}
            if page * per_page < len(ids):
                body["next_page"] = f"{self.base}/v1/search/?page={page + 1}&per_page={per_page}&query={query}"
            payload = json.dumps(body).encode()
        elif url.path.startswith("/img/"):
            i = int(Path(url.path).stem)
            key, payload, limits = f"img:{i}", self.photo_bytes[i], {}
        else:
            return self.send(h, 404, b"not found", {})
        self.hits[key] += 1
        fault = self.faults.get(key, []).pop(0) if self.faults.get(key) else None
        if fault == "429":
            reset = str(int(time.time()) + 30)
            return self.send(
                h, 429, b"{}", {"X-Ratelimit-Limit": "20000", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": reset}
            )
        if fault == "500":
            return self.send(h, 500, b"oops", {})
        self.send(h, 200, payload, limits, cut=fault == "cut")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeTime:
    """Sleeps that only advance a clock: retries and rate-limit waits cost the test nothing."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s

    def clock(self) -> float:
        return max(self.now, time.time())


@pytest.fixture
def api():
    fake = FakePexels(
        {"cats": [1, 2, 3, 4, 5], "dogs": [11, 12, 13]},
        {"search:cats:1": ["429"], "search:dogs:1": ["cut"], "img:2": ["500"], "img:3": ["cut"], "img:11": ["500", "cut"]},
    )
    yield fake
    fake.close()


def run(api: FakePexels, folder: Path, count: int, t: FakeTime, monkeypatch, *extra: str) -> int:
    monkeypatch.setenv("PEXELS_API_KEY", KEY)
    argv = [
        str(folder),
        "--query",
        "cats",
        "dogs",
        "--count",
        str(count),
        "--base-url",
        f"{api.base}/v1",
        "--per-page",
        "2",
        *extra,
    ]
    return dl.main(argv, sleep=t.sleep, clock=t.clock)


def test_download_pages_retries_and_rate_limit(api, tmp_path, monkeypatch, capsys):
    t = FakeTime()
    assert run(api, tmp_path / "px", 6, t, monkeypatch) == 0
    # Queries in turn, a page each: cats 1-2, dogs 11-12, cats 3-4.
    files = sorted(p.name for p in (tmp_path / "px").iterdir())
    assert files == ["1.jpeg", "11.jpeg", "12.jpeg", "2.jpeg", "3.jpeg", "4.jpeg", "manifest.jsonl"]
    for i in (1, 2, 3, 4, 11, 12):
        assert (tmp_path / "px" / f"{i}.jpeg").read_bytes() == api.photo_bytes[i]  # cut bodies were fetched again
    assert api.hits["img:2"] == 2 and api.hits["img:3"] == 2 and api.hits["img:11"] == 3
    assert api.hits["search:cats:1"] == 2 and api.hits["search:dogs:1"] == 2
    assert api.hits["search:cats:3"] == 0  # stopped once it had 6
    assert any(25 <= s <= 31 for s in t.slept), t.slept  # waited for X-Ratelimit-Reset after the 429
    manifest = [json.loads(line) for line in (tmp_path / "px" / "manifest.jsonl").read_text().splitlines()]
    assert [m["id"] for m in manifest] == [1, 2, 11, 12, 3, 4]
    assert manifest[0] | {"bytes": 0} == {
        "id": 1, "url": "https://www.pexels.com/photo/p-1/", "photographer": "Ph 1", "photographer_url": "https://www.pexels.com/@ph1",
        "width": 1001, "height": 700, "size": "large2x", "src": f"{api.base}/img/1.jpeg?dpr=2&h=650&w=940", "bytes": 0,
        "file": "1.jpeg", "query": "cats",
    }  # fmt: skip
    assert "6 photos downloaded, 6 in all" in capsys.readouterr().out


def test_resume_fetches_only_missing_photos(api, tmp_path, monkeypatch):
    folder = tmp_path / "px"
    assert run(api, folder, 3, FakeTime(), monkeypatch) == 0
    before = sum(v for k, v in api.hits.items() if k.startswith("img:"))
    assert run(api, folder, 3, FakeTime(), monkeypatch) == 0
    assert sum(v for k, v in api.hits.items() if k.startswith("img:")) == before  # nothing fetched twice
    # A kill after a rename but before its manifest line, and a torn last manifest line:
    (folder / "13.jpeg").write_bytes(api.photo_bytes[13])
    text = (folder / "manifest.jsonl").read_text()
    (folder / "manifest.jsonl").write_text(text + '{"id": 4, "url": ')
    (folder / "5.jpeg.part").write_bytes(b"half")
    assert run(api, folder, 8, FakeTime(), monkeypatch) == 0
    ids = [json.loads(line)["id"] for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert sorted(ids) == [1, 2, 3, 4, 5, 11, 12, 13] and len(ids) == len(set(ids))
    assert api.hits["img:13"] == 0 and not list(folder.glob("*.part"))
    assert run(api, folder, 100, FakeTime(), monkeypatch) == 0  # the queries run out: stops, says so


def test_bad_key_and_missing_key_are_one_line(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PEXELS_API_KEY", "wrong")
    assert dl.main([str(tmp_path / "a"), "--query", "cats", "--count", "2", "--base-url", f"{api.base}/v1"]) == 2
    assert capsys.readouterr().err.strip() == "error: Pexels refused the API key in PEXELS_API_KEY (HTTP 401)"
    monkeypatch.delenv("PEXELS_API_KEY")
    assert dl.main([str(tmp_path / "a"), "--query", "cats", "--count", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: set PEXELS_API_KEY")


def test_no_network_fails_with_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PEXELS_API_KEY": KEY, "PATH": "/usr/bin:/bin"}
    args = ["--query", "cats", "--count", "1", "--base-url", f"http://127.0.0.1:{port}/v1", "--retries", "1", "--backoff", "0"]
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "px"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("error: ") and "Traceback" not in r.stderr
    assert "gave up after 2 tries" in lines[-1]
    # No DNS at all (the usual "no network"): no retries, one line naming the host.
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "px"), *args[:4], "--base-url", "http://api.pexels.invalid/v1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
