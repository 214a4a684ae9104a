"""What the browser tests share: Chromium's path and flags, serving an app on 127.0.0.1, artifacts."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
REQUIRE_BROWSER = os.environ.get("DIGITLAB_REQUIRE_BROWSER") == "1"


def need_browser() -> None:
    """Skip (or fail, with DIGITLAB_REQUIRE_BROWSER=1) when Chromium or Playwright is missing."""
    why = None
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} not found (install Debian's chromium package)"
    else:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            why = "the playwright Python package is not installed"
    if why:
        if REQUIRE_BROWSER:
            pytest.fail(f"browser test required (DIGITLAB_REQUIRE_BROWSER=1) but {why}")
        pytest.skip(why)


def artifacts_dir() -> Path:
    root = os.environ.get("DIGITLAB_ARTIFACTS")
    path = Path(root) if root else Path(__file__).resolve().parents[1] / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def serving(app, start_timeout: float = 60) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's) driven by Playwright."""
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def draw(page, strokes, steps: int = 8, canvas: str = "#pad") -> None:
    """Draw strokes given in fractions of the canvas (0..1) with the mouse."""
    page.locator(canvas).scroll_into_view_if_needed()
    box = page.locator(canvas).bounding_box()
    for stroke in strokes:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=steps)
        page.mouse.up()
