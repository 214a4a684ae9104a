"""Running the app with uvicorn: one process, or several workers that each load the model once."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import uvicorn

from digitlab.errors import ConfigError
from digitlab.serve.app import (
    DEFAULT_MAX_UPLOAD_BYTES,
    ENV_ALLOWED_HOSTS,
    ENV_MAX_UPLOAD,
    ENV_MODEL,
    ENV_THREADS,
    create_app,
)
from digitlab.serve.guard import LOOPBACK_HOSTS, host_names
from digitlab.serve.protocol import (
    BODY_TIMEOUT,
    ENV_BODY_TIMEOUT,
    ENV_HEADER_TIMEOUT,
    HEADER_TIMEOUT,
    GuardedHttpToolsProtocol,
)

PROTOCOL = f"{GuardedHttpToolsProtocol.__module__}:{GuardedHttpToolsProtocol.__qualname__}"

SERVER_TORCH_THREADS = 1  # requests are tiny and arrive in parallel: one thread each, no pool churn
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this long
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# A worker that loads torch and the model on a busy machine can take longer than uvicorn's 5 s to
# answer its supervisor's first ping; it would be killed and restarted in a loop.
WORKER_HEALTHCHECK_SECONDS = 60


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host names answered: loopback, the listening address unless it is a wildcard, and ``extra``."""
    names = set(LOOPBACK_HOSTS) | host_names(extra)
    if host.strip("[]") not in WILDCARD_HOSTS:
        names |= host_names([host])
    return sorted(names)


def uvicorn_options(access_log: bool) -> dict:
    """Uvicorn's settings: the guarded protocol; no connection-count limit (the app counts work instead)."""
    # (named by its import path: a worker process imports it once started, after answering uvicorn's pings)
    return dict(log_level="warning", access_log=access_log, http=PROTOCOL,
                limit_concurrency=None, timeout_keep_alive=KEEP_ALIVE_SECONDS, server_header=False,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS)


def serve(model_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, access_log: bool = False,
          announce: Callable[[str], None] | None = None, allow_hosts: Iterable[str] = (),
          header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT) -> None:
    """Serve one model until interrupted. ``announce`` receives the page's URL once listening is possible.

    Requests must name the server in their ``Host`` header by a loopback name, the ``host``
    address, or one of ``allow_hosts`` (``"*"``: any name; for a server behind a reverse proxy). A client gets
    ``header_timeout`` seconds to send its request line and headers, and ``body_timeout`` for its body.

    The model is loaded here first (so a bad path fails before anything listens); with
    ``workers > 1`` every worker process loads its own copy through :func:`create_app_from_env`.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    if max_upload_bytes <= 0:
        raise ConfigError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
    for name, value in (("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if not 0 < value <= 3600:
            raise ConfigError(f"{name} must be between 0 and 3600 seconds, got {value}")
    if workers > 1 and port == 0:
        raise ConfigError("--port 0 (any free port) works only with --workers 1")
    path = Path(model_path)
    if not path.exists():
        raise ConfigError(f"{path}: no such run folder or .onnx file; train one with 'digitlab train'")
    os.environ[ENV_HEADER_TIMEOUT] = str(header_timeout)  # read by every connection, in every worker
    os.environ[ENV_BODY_TIMEOUT] = str(body_timeout)
    hosts = allowed_hosts(host, allow_hosts)
    app = create_app(path, max_upload_bytes, torch_threads=SERVER_TORCH_THREADS, allowed_hosts=hosts)
    sock = _listen_socket(host, port)
    bound_port = sock.getsockname()[1]
    common = uvicorn_options(access_log)
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
    os.environ[ENV_ALLOWED_HOSTS] = ",".join(hosts)
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
