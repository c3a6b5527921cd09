"""A closed-loop HTTP load generator: N clients, each sending its next request as soon as the last one answered.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (uvloop when installed): it
sends pre-built requests and reads each response's status line, headers and body (Content-Length
or chunked) without decoding the body. The client shares the machine with the servers, so it is
kept cheap: what is measured is the servers, not the client's JSON or HTTP parsing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Request:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Cell:
    name: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    error_samples: list[str]
    latencies_ms: list[float]
    bytes_received: int

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "errors": self.errors,
            "error_samples": self.error_samples[:3],
            "rps": round(self.requests / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50), 2) if lat else None,
            "p90_ms": round(percentile(lat, 90), 2) if lat else None,
            "p99_ms": round(percentile(lat, 99), 2) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
            "max_ms": round(lat[-1], 2) if lat else None,
            "mean_response_bytes": round(self.bytes_received / self.requests) if self.requests else 0,
        }


def merge(cells: list[Cell]) -> Cell:
    """Several windows of the same cell as one: requests over total measured time, latencies pooled."""
    first = cells[0]
    return Cell(
        first.name,
        first.concurrency,
        sum(c.seconds for c in cells),
        sum(c.requests for c in cells),
        sum(c.errors for c in cells),
        [e for c in cells for e in c.error_samples],
        [x for c in cells for x in c.latencies_ms],
        sum(c.bytes_received for c in cells),
    )


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def encode(req: Request) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes)."""
    url = urlsplit(req.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    body = req.body or b""
    lines = [
        f"{req.method} {path} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in req.headers.items()),
    ]
    return url.hostname, url.port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, data: bytes) -> tuple[int, bytes]:
        """One request/response; returns (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:  # read to close
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _run(
    name: str,
    make: Callable[[int], Request],
    ok: Callable[[int], bool],
    concurrency: int,
    seconds: float,
    warmup: float,
    on_window: Callable[[str], None] | None,
) -> Cell:
    counter = 0
    latencies: list[float] = []
    errors: list[str] = []
    received = 0
    measuring = False
    stop_at = float("inf")

    async def one_client() -> None:
        nonlocal counter, received
        conn: Connection | None = None
        try:
            while time.perf_counter() < stop_at:
                counter += 1
                host, port, data = encode(make(counter))
                if conn is None:
                    conn = Connection(host, port)
                start = time.perf_counter()
                try:
                    status, body = await conn.send(data)
                    good, size, detail = ok(status), len(body), f"{status} {body[:200]!r}"
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    conn.close()
                    good, size, detail = False, 0, f"{type(exc).__name__}: {exc}"
                end = time.perf_counter()
                if measuring and end <= stop_at:
                    if good:
                        latencies.append((end - start) * 1000)
                        received += size
                    else:
                        errors.append(detail)
        finally:
            if conn is not None:
                conn.close()

    tasks = [asyncio.create_task(one_client()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)  # connections open, server caches warm; not counted
    if on_window:
        on_window("start")
    measuring = True
    stop_at = time.perf_counter() + seconds
    await asyncio.sleep(seconds)
    if on_window:
        on_window("end")
    # Requests still in flight at the deadline are not counted; the window is exactly `seconds`.
    await asyncio.gather(*tasks)
    return Cell(name, concurrency, seconds, len(latencies), len(errors), errors, latencies, received)


def run_cell(
    name: str,
    make: Callable[[int], Request],
    ok: Callable[[int], bool],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 2.0,
    on_window: Callable[[str], None] | None = None,
) -> Cell:
    """`ok(status)` says whether a response counts; `on_window("start"/"end")` marks the measured window."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_run(name, make, ok, concurrency, seconds, warmup, on_window))
