"""Running the app with uvicorn: one process, or several workers that each load the model once."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from digitlab.errors import ConfigError
from digitlab.serve.app import (
    DEFAULT_MAX_UPLOAD_BYTES,
    ENV_MAX_UPLOAD,
    ENV_MODEL,
    ENV_THREADS,
    create_app,
)

SERVER_TORCH_THREADS = 1  # requests are tiny and arrive in parallel: one thread each, no pool churn


def serve(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, access_log: bool = False,
          announce: Callable[[str], None] | None = None) -> None:
    """Serve one model until interrupted. ``announce`` receives the page's URL once listening is possible.

    The model is loaded here first (so a bad path fails before anything listens); with
    ``workers > 1`` every worker process loads its own copy through :func:`create_app_from_env`.
    """
    import uvicorn

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    if max_upload_bytes <= 0:
        raise ConfigError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
    if workers > 1 and port == 0:
        raise ConfigError("--port 0 (any free port) works only with --workers 1")
    path = Path(model_path)
    if not path.exists():
        raise ConfigError(f"{path}: no such run folder or .onnx file; train one with 'digitlab train'")
    app = create_app(path, max_upload_bytes, torch_threads=SERVER_TORCH_THREADS)
    sock = _listen_socket(host, port)
    bound_port = sock.getsockname()[1]
    common = dict(log_level="warning", access_log=access_log, limit_concurrency=512, timeout_keep_alive=5,
                  server_header=False)
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(app, **common))
        if announce:
            announce(url(host, bound_port))
        server.run(sockets=[sock])
        return
    sock.close()  # checked that it is free; uvicorn binds it again and shares it with the workers
    del app
    os.environ[ENV_MODEL] = str(path.resolve())
    os.environ[ENV_MAX_UPLOAD] = str(max_upload_bytes)
    os.environ[ENV_THREADS] = str(SERVER_TORCH_THREADS)
    if announce:
        announce(url(host, bound_port))
    uvicorn.run("digitlab.serve.app:create_app_from_env", factory=True, host=host, port=bound_port,
                workers=workers, **common)


def url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _listen_socket(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve host {host!r} ({e.strerror}); use e.g. --host 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port "
                          "or stop the program using it") from None
    sock.set_inheritable(True)
    return sock
