"""A closed-loop HTTP load generator: N clients, each sending its next request as soon as the last one answered."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Request:
    method: str
    url: str
    json: dict | None = None
    body: bytes | None = None  # pre-encoded JSON body, so the client does not re-encode it every time
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
            "name": self.name, "concurrency": self.concurrency, "seconds": round(self.seconds, 3),
            "requests": self.requests, "errors": self.errors, "error_samples": self.error_samples[:3],
            "rps": round(self.requests / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50), 2) if lat else None,
            "p90_ms": round(percentile(lat, 90), 2) if lat else None,
            "p99_ms": round(percentile(lat, 99), 2) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
            "max_ms": round(lat[-1], 2) if lat else None,
            "mean_response_bytes": round(self.bytes_received / self.requests) if self.requests else 0,
        }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


async def _run(name: str, make: Callable[[int], Request], ok: Callable[[httpx.Response], bool], concurrency: int,
               seconds: float, warmup: float, on_window: Callable[[str], None] | None) -> Cell:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        counter = 0
        latencies: list[float] = []
        errors: list[str] = []
        received = 0
        measuring = False
        stop_at = float("inf")

        async def one_client() -> None:
            nonlocal counter, received
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                counter += 1
                req = make(counter)
                start = time.perf_counter()
                try:
                    resp = await client.request(req.method, req.url, json=req.json, content=req.body,
                                                headers=req.headers)
                    good = ok(resp)
                    size = len(resp.content)
                    detail = f"{resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    good, size, detail = False, 0, f"{type(exc).__name__}: {exc}"
                end = time.perf_counter()
                if measuring and end <= stop_at:
                    if good:
                        latencies.append((end - start) * 1000)
                        received += size
                    else:
                        errors.append(detail)

        tasks = [asyncio.create_task(one_client()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)  # connections open, server caches warm; not counted
        if on_window:
            on_window("start")
        measuring = True
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        await asyncio.sleep(seconds)
        if on_window:
            on_window("end")
        await asyncio.gather(*tasks)
        # Requests still in flight at the deadline are not counted; the window is exactly `seconds`.
        return Cell(name, concurrency, seconds, len(latencies), len(errors), errors, latencies, received)


def run_cell(name: str, make: Callable[[int], Request], ok: Callable[[httpx.Response], bool], *, concurrency: int,
             seconds: float, warmup: float = 2.0, on_window: Callable[[str], None] | None = None) -> Cell:
    """`on_window("start")` and `on_window("end")` are called at the edges of the measured window."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_run(name, make, ok, concurrency, seconds, warmup, on_window))
