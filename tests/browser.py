"""Headless Chromium for the dashboard tests: the DOM after a page's scripts ran (`--dump-dom`), parsed into a
small tree, and a DevTools Protocol client that clicks and types for real."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.procs import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

# ---------------------------------------------------------------------------------------------------------------
# A small DOM from Chromium's serialized HTML


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag) and all(n.attrs.get(k) == v for k, v in want.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag or '*'} {attrs}>, found {len(found)}"
        return found[0]

    def by_id(self, ident: str) -> Node:
        return self.one(id=ident)


class DomBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: (v or "") for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> Node:
    builder = DomBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# ---------------------------------------------------------------------------------------------------------------
# Chromium


def chromium_cmd(profile: str) -> list[str]:
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
    ]


def run_chromium(args: list[str], timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(prefix="plateau-chromium-") as profile:
        done = subprocess.run(
            [*chromium_cmd(profile), *args], capture_output=True, text=True, timeout=timeout, start_new_session=True
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def dump_dom(url: str, wait_for_loaded: bool = True) -> Node:
    """The DOM after the page's scripts ran; retried while the page has not finished its first load."""
    dom = None
    for _ in range(3):
        dom = parse(run_chromium(["--virtual-time-budget=8000", "--dump-dom", url]))
        body = dom.one("body")
        if not wait_for_loaded or body.attrs.get("data-loaded") == "true":
            return dom
    raise AssertionError(f"{url} did not finish loading: {dom.one('body').text()[:2000]}")


class Browser:
    """Headless Chromium driven over the DevTools Protocol (one page, JSON messages over a websocket)."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="plateau-cdp-")
        self.proc = subprocess.Popen(
            [*chromium_cmd(self.profile), "--remote-debugging-port=0", "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.ids = itertools.count(1)
        self.ws = None
        self.errors: list[str] = []
        """Uncaught exceptions and console errors (a CSP violation is one) other than failed requests."""

    async def __aenter__(self) -> Browser:
        from websockets.asyncio.client import connect

        port_file = Path(self.profile) / "DevToolsActivePort"
        port = wait_for(
            lambda: port_file.exists() and port_file.read_text().split("\n")[0].strip(),
            30,
            lambda: "Chromium did not open its DevTools port",
            interval=0.2,
        )
        pages = wait_for(
            lambda: [t for t in self._targets(port) if t.get("type") == "page"],
            30,
            lambda: "Chromium has no page target",
            interval=0.2,
        )
        self.ws = await asyncio.wait_for(connect(pages[0]["webSocketDebuggerUrl"], max_size=None), 30)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Log.enable")
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    @staticmethod
    def _targets(port: str) -> list[dict]:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
        except httpx.HTTPError:
            return []

    async def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        ident = next(self.ids)
        await self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))

        async def answer() -> dict:
            while True:
                msg = json.loads(await self.ws.recv())
                self._note(msg)
                if msg.get("id") == ident:
                    if "error" in msg:
                        raise AssertionError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

        return await asyncio.wait_for(answer(), timeout)

    def _note(self, msg: dict) -> None:
        params = msg.get("params", {})
        if msg.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif msg.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif msg.get("method") == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                self.errors.append(entry.get("text", ""))

    async def eval(self, expression: str):
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.eval(expression)
            except AssertionError:  # the page is between documents
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.2)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.until(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, after scrolling it into view."""
        box = await self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
        }})()""")
        assert box, f"nothing matches {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    async def type_into(self, selector: str, text: str) -> None:
        await self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", {"text": text})


def run(coro, timeout: float = 180):
    return asyncio.run(asyncio.wait_for(coro, timeout))
