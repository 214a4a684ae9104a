"""The drawing page under a pen, in real headless Chromium, with the shipped CNN.

    PYTHONPATH=src python benchmarks/bench_page.py [--digits 10] [--model models/mnist-best]

Draws digits with pointer moves paced like a pen (one move every ~8 ms) and prints:

- the size of each /api/predict answer, as the page asks for it (8-bit activations, layers shown);
- requests per digit (one in flight, the latest drawing wins);
- main-thread work: the longest pointer-event listener, the longest redraw (requestAnimationFrame),
  the longest handling of an answer (JSON to bars and activation canvases), and long tasks (> 50 ms);
- the final answer's delay: from the last pointerup to the answer on screen.

Targets: answers <= 20 KB, no input event over 16 ms of main-thread work, final answer <= 80 ms.
The server runs in this process (uvicorn in a thread, one torch thread), so a loaded machine shows
in the delay: the model time is printed beside it.
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]

# Wrap every pointer listener (and requestAnimationFrame callbacks) to time them on the main thread.
TIMING = """
(() => {
  window.__timing = { pointer: [], frame: [], longtasks: [] };
  const add = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, fn, opts) {
    if (/^pointer|^lostpointer/.test(type) && typeof fn === 'function') {
      const inner = fn;
      fn = function (e) { const t0 = performance.now(); try { return inner.call(this, e); }
                          finally { window.__timing.pointer.push(performance.now() - t0); } };
    }
    return add.call(this, type, fn, opts);
  };
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (cb) => raf((ts) => { const t0 = performance.now(); cb(ts);
                                                      window.__timing.frame.push(performance.now() - t0); });
  try {
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__timing.longtasks.push(e.duration)))
      .observe({ type: 'longtask', buffered: true });
  } catch (e) { /* no long-task timing */ }
})();
"""

DIGITS = {  # strokes in fractions of the pad
    "7": [[(0.28, 0.22), (0.72, 0.22), (0.45, 0.82)]],
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "4": [[(0.62, 0.85), (0.62, 0.15), (0.25, 0.6), (0.78, 0.6)]],
    "0": [[(0.5 + 0.26 * math.sin(a / 24 * 2 * math.pi), 0.5 - 0.34 * math.cos(a / 24 * 2 * math.pi))
           for a in range(25)]],
    "2": [[(0.3, 0.3), (0.45, 0.18), (0.65, 0.22), (0.68, 0.38), (0.3, 0.8), (0.72, 0.8)]],
}


def serve(model: Path) -> tuple[str, subprocess.Popen]:
    """``digitlab``'s app in its own process (not sharing this one's GIL with the browser driver)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import uvicorn; from digitlab.serve import create_app; "
            f"uvicorn.run(create_app({str(model)!r}, torch_threads=1), host='127.0.0.1', port={port}, "
            "log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return url, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def pen(page, strokes, pace_ms: float) -> None:
    box = page.locator("#pad").bounding_box()
    at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])  # noqa: E731
    for stroke in strokes:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            n = max(2, int(math.hypot(x1 - x0, y1 - y0) * 60))
            for k in range(1, n + 1):
                page.mouse.move(*at(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n))
                page.wait_for_timeout(pace_ms)
        page.mouse.up()


def summary(values: list[float], unit: str, over: float | None = None) -> str:
    if not values:
        return "none"
    text = (f"median {statistics.median(values):.1f} {unit}, max {max(values):.1f} {unit}, "
            f"min {min(values):.1f} {unit} (n={len(values)})")
    if over is not None:
        text += f", {sum(v > over for v in values)} over {over:g} {unit}"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "mnist-best")
    ap.add_argument("--digits", type=int, default=10, help="how many digits to draw (cycling 7 1 4 0 2)")
    ap.add_argument("--pace-ms", type=float, default=8.0, help="time between pointer moves")
    args = ap.parse_args(argv)
    url, server = serve(args.model)
    try:
        return run(args, url)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(args: argparse.Namespace, url: str) -> int:
    from playwright.sync_api import sync_playwright

    sizes: list[int] = []
    per_digit: list[int] = []
    finals: list[float] = []
    shows: list[float] = []
    model_ms: list[float] = []
    trips: list[float] = []
    wrong = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        page.add_init_script(TIMING)

        def seen(res):
            if "/api/predict" in res.url:
                try:
                    body = res.body()
                except Exception:  # a request the page aborted (the drawing changed): no body
                    return
                sizes.append(len(body))
                model_ms.append(res.json().get("model_ms", 0.0))

        page.on("response", seen)
        page.goto(url + "/")
        page.wait_for_function("document.querySelector('#model-name').textContent !== '…'")
        names = list(DIGITS)
        for i in range(args.digits):
            digit = names[i % len(names)]
            before = len(sizes)
            pen(page, DIGITS[digit], args.pace_ms)
            page.wait_for_function("document.body.dataset.busy === 'false'")
            page.wait_for_timeout(150)
            per_digit.append(len(sizes) - before)
            got = page.locator("#prediction").text_content()
            wrong += got != digit
            m = page.evaluate("performance.getEntriesByName('digitlab:final-answer').map(e => e.duration)")
            finals.append(m[-1] if m else float("nan"))
            trips.append(page.evaluate("""performance.getEntriesByType('resource')
                .filter(e => e.name.includes('/api/predict')).map(e => e.duration).at(-1)"""))
            page.keyboard.press("Escape")
            page.wait_for_timeout(100)
        timing = page.evaluate("window.__timing")
        shows = page.evaluate("performance.getEntriesByName('digitlab:show').map(e => e.duration)")
        browser.close()

    print(f"model {args.model.name}, {args.digits} digits, a pointer move every {args.pace_ms:g} ms")
    print(f"answer size: {summary([s / 1024 for s in sizes], 'KB')}   target <= 20 KB")
    print(f"requests per digit: {summary([float(n) for n in per_digit], '')}")
    print(f"pointer listener: {summary(timing['pointer'], 'ms', 16)}")
    print(f"redraw (rAF): {summary(timing['frame'], 'ms', 16)}")
    print(f"answer handling: {summary(shows, 'ms', 16)}   target: every input event <= 16 ms")
    print(f"long tasks (> 50 ms): {len(timing['longtasks'])}"
          + (f", longest {max(timing['longtasks']):.0f} ms" if timing["longtasks"] else ""))
    print(f"final answer after the last stroke: {summary(finals, 'ms')}   target <= 80 ms")
    print(f"  of which the final request's round trip: {summary(trips, 'ms')}")
    print(f"model time per answer (server): {summary(model_ms, 'ms')}")
    print(f"digits read right: {args.digits - wrong}/{args.digits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
