"""Screenshots of the drawing page for the README: desktop and phone, English and Chinese.

    PYTHONPATH=src python scripts/page_screenshots.py [--out docs]

Serves models/mnist-best on 127.0.0.1, draws a 7 in headless Chromium and writes
page-{desktop,phone}-{en,zh}.png (palette PNGs, small enough for the repository).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SEVEN = [(0.28, 0.22), (0.72, 0.22), (0.45, 0.82)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-best")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import uvicorn
    from playwright.sync_api import sync_playwright

    from digitlab.serve import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(args.model), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        for size, viewport, touch in [("desktop", (1280, 860), False), ("phone", (390, 844), True)]:
            for lang, header in [("en", "en-US,en"), ("zh", "zh-CN,zh;q=0.9")]:
                context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                              has_touch=touch, is_mobile=touch, device_scale_factor=1,
                                              extra_http_headers={"Accept-Language": header}, bypass_csp=True)
                page = context.new_page()
                page.goto(url)
                page.wait_for_function("document.querySelector('#model-name').textContent !== '…'")
                box = page.locator("#pad").bounding_box()
                at = lambda x, y, b=box: (b["x"] + x * b["width"], b["y"] + y * b["height"])  # noqa: E731
                page.mouse.move(*at(*SEVEN[0]))
                page.mouse.down()
                for x, y in SEVEN[1:]:
                    page.mouse.move(*at(x, y), steps=12)
                page.mouse.up()
                page.wait_for_function("document.body.dataset.busy === 'false'")
                page.wait_for_timeout(400)
                path = args.out / f"page-{size}-{lang}.png"
                page.screenshot(path=str(path))
                Image.open(path).convert("RGB").quantize(96).save(path, optimize=True)
                print(path, path.stat().st_size // 1024, "KB")
                context.close()
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
