"""Load test for ``digitlab serve``: requests/s and latency percentiles on loopback.

Starts the server (``python -m digitlab serve``, a subprocess on 127.0.0.1 and a free port) for each
run given, or for a quick MLP and CNN it trains itself, then lets N concurrent clients (threads
with keep-alive ``http.client`` connections: a lean client, since it shares the CPU with the
server) POST pictures of digits to /api/predict until either the request budget or the time
budget is spent. Prints requests/s and p50/p95/p99 latency per run and input kind.

    python benchmarks/bench_serve.py                       # quick mlp + cnn runs, PNG input
    python benchmarks/bench_serve.py runs/mlp runs/cnn --clients 16 --requests 3000 --seconds 20
    python benchmarks/bench_serve.py runs/mlp --workers 2 --input png --input json --input canvas

Inputs: ``png`` = 100 real MNIST test digits as 28x28 PNG files, sent in turn (synthetic digits
without DIGITLAB_DATA_DIR); ``canvas`` = 140x140 PNGs like the drawing page sends, posted as a plain
upload (read as a number); ``page`` = the same drawings posted the way the page's drawing pad posts
them (``?single=1``, with the dense layers' activations the page shows, as bytes); ``json`` =
28x28 JSON pixels (no picture decoding: the server and model alone); ``realworld`` = the pictures
of ``tests/realworld``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# -- inputs -------------------------------------------------------------------------------------


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def mnist_digits(n: int = 100) -> np.ndarray | None:
    data_dir = os.environ.get("DIGITLAB_DATA_DIR")
    if not data_dir:
        return None
    try:
        from digitlab.data.datasets import load_data

        (_, _), (x_test, _) = load_data("mnist", data_dir=data_dir)
    except Exception as e:  # no data there: fall back to synthetic digits
        print(f"(no MNIST in {data_dir}: {e}; using synthetic digits)", file=sys.stderr)
        return None
    return np.asarray(x_test[:n])


def synthetic_digits(n: int = 100) -> np.ndarray:
    """White strokes on black, roughly digit-shaped (bars and boxes), 28x28 uint8."""
    rng = np.random.default_rng(0)
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(3, 7), rng.integers(7, 13)
        h, w = rng.integers(16, 21), rng.integers(3, 11)
        out[i, top:top + h, left:left + 3] = 255
        out[i, top:top + 3, left:left + w] = 255
    return out


def make_bodies(kind: str) -> tuple[list[bytes], str]:
    digits = mnist_digits()
    if digits is None:
        digits = synthetic_digits()
    if kind == "png":
        return [_png(d) for d in digits], "image/png"
    if kind == "json":
        return [json.dumps({"pixels": d.tolist()}).encode() for d in digits], "application/json"
    if kind in ("canvas", "page"):
        from PIL import Image

        big = [np.asarray(Image.fromarray(d).resize((140, 140), Image.Resampling.BILINEAR)) for d in digits[:20]]
        return [_png(b) for b in big], "image/png"
    if kind == "realworld":  # the real-world set's photos, scans, pencil, screens and canvases (32-200 px)
        folder = ROOT / "tests" / "realworld" / "images"
        files = sorted(folder.iterdir())
        return [f.read_bytes() for f in files], "application/octet-stream"
    raise SystemExit(f"unknown input kind {kind!r}; use png, canvas, page, json or realworld")


def page_path(port: int) -> str:
    """The URL the page's drawing pad posts a drawing to: one digit, with the activations it shows
    beside the answer for every dense layer (feature maps only on a click, left out here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/model")
    layers = [layer["name"] for layer in json.loads(conn.getresponse().read())["activation_layers"]
              if len(layer["shape"]) != 3]
    conn.close()
    if not layers:
        return "/api/predict?single=1"
    return f"/api/predict?activations=1&act_format=u8&layers={','.join(layers)}&single=1"


# -- a quick run when none is given ------------------------------------------------------------


def quick_run(path: Path, model: str, steps: int) -> Path:
    """A small trained run folder (real MNIST when DIGITLAB_DATA_DIR has it, else synthetic)."""
    import torch

    from digitlab.models import build_model
    from digitlab.runs import CONFIG, METRICS, save_weights, write_json

    torch.set_num_threads(1)
    torch.manual_seed(0)
    digits = None
    labels = None
    if os.environ.get("DIGITLAB_DATA_DIR"):
        try:
            from digitlab.data.datasets import load_data

            (x_train, y_train), _ = load_data("mnist", data_dir=os.environ["DIGITLAB_DATA_DIR"])
            digits, labels = x_train[:20000], y_train[:20000]
        except Exception:
            digits = None
    if digits is None:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, 4000)
        digits = rng.integers(0, 40, (4000, 28, 28)).astype(np.uint8)
        for k in range(10):
            r, c = divmod(k, 4)
            digits[labels == k, 4 + r * 7:10 + r * 7, 2 + c * 6:8 + c * 6] = 255
    x = torch.from_numpy(digits.astype(np.float32) / 255.0)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    net = build_model(model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / CONFIG, {"model": {"name": net.name, **net.options}, "dataset": "mnist",
                               "labels": [str(i) for i in range(10)]})
    save_weights(path, net)
    write_json(path / METRICS, {"test_accuracy": None, "test_loss": None})
    return path


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, workers: int):
        self.port = free_port()
        cmd = [sys.executable, "-m", "digitlab", "serve", str(model), "--port", str(self.port),
               "--workers", str(workers), "--quiet"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("server did not start within 120 s")
            time.sleep(0.2)
        if workers > 1:
            time.sleep(2.0)  # let every worker finish loading before measuring

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the load -----------------------------------------------------------------------------------


def load(port: int, path: str, bodies: list[bytes], content_type: str, clients: int, max_requests: int,
         max_seconds: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    counter = iter(range(max_requests))
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": content_type, "Connection": "keep-alive"}
        start_gate.wait()
        mine = latencies[k]
        i = k
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            if time.perf_counter() > stop_at[0]:
                break
            body = bodies[i % len(bodies)]
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
            if not ok:
                errors[k] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + max_seconds
    cpu0 = os.times()
    start_gate.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    lat = np.array([x for xs in latencies for x in xs]) * 1000.0
    return {
        "requests": int(lat.size), "errors": int(sum(errors)), "seconds": wall,
        "rps": lat.size / wall if wall else 0.0,
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "client_cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }


def warm_up(port: int, path: str, bodies: list[bytes], content_type: str, n: int = 50) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(n):
        conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": content_type})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"warm-up request failed: {resp.status} {body[:200]!r}")
    conn.close()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live children, from /proc (0 where unavailable)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    pids = [pid]
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry))
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except OSError:
        return 0.0
    return total


def busy_processes(limit: int = 4) -> str:
    """What else is using the CPU right now (from ps), so the numbers can be read in context."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True,
                             text=True, timeout=5).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?"
    rows = [r.split(None, 1) for r in out if r.strip()]
    rows = [(float(c), n) for c, n in rows if float(c) >= 5.0 and n != "ps"]
    return ", ".join(f"{n} {c:.0f}%" for c, n in rows[:limit]) or "nothing else above 5%"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders or .onnx files (default: quick mlp + cnn)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3000, help="at most this many requests per measurement")
    ap.add_argument("--seconds", type=float, default=20.0, help="at most this long per measurement")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--input", action="append", choices=["png", "canvas", "page", "json", "realworld"],
                    help="what to send (repeatable; default png)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = ap.parse_args(argv)
    kinds = args.input or ["png"]

    tmp = None
    runs = args.runs
    if not runs:
        tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
        print("training quick mlp and cnn runs ...", file=sys.stderr)
        runs = [quick_run(Path(tmp.name) / "mlp", "mlp", 400), quick_run(Path(tmp.name) / "cnn", "cnn", 150)]
    cores = os.cpu_count()
    print(f"# {cores} CPU cores, load average {os.getloadavg()[0]:.2f}; busy: {busy_processes()}")
    print(f"# {args.clients} clients, at most {args.requests} requests or {args.seconds:g} s each, "
          f"{args.workers} server worker(s)")
    print(f"{'model':<10}{'input':<8}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}{'server CPU ms/req':>19}{'client':>8}  load")
    try:
        for run in runs:
            server = Server(run, args.workers)
            try:
                for kind in kinds:
                    bodies, ctype = make_bodies(kind)
                    path = page_path(server.port) if kind == "page" else "/api/predict"
                    warm_up(server.port, path, bodies, ctype)
                    cpu0 = process_cpu_seconds(server.proc.pid)
                    r = load(server.port, path, bodies, ctype, args.clients, args.requests, args.seconds)
                    n = max(r["requests"], 1)
                    r["server_cpu_ms"] = (process_cpu_seconds(server.proc.pid) - cpu0) * 1000.0 / n
                    r["client_cpu_ms"] = r.pop("client_cpu_s") * 1000.0 / n
                    la = os.getloadavg()[0]
                    if args.json:
                        print(json.dumps({"run": str(run), "input": kind, "workers": args.workers,
                                          "clients": args.clients, **r, "load": la}))
                    else:
                        print(f"{Path(run).name:<10}{kind:<8}{r['requests']:>9}{r['errors']:>7}{r['rps']:>9.0f}"
                              f"{r['p50']:>9.2f}{r['p95']:>9.2f}{r['p99']:>9.2f}{r['server_cpu_ms']:>19.2f}"
                              f"{r['client_cpu_ms']:>8.2f}  {la:.2f}")
            finally:
                server.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"# busy after: {busy_processes()}")


if __name__ == "__main__":
    main()
