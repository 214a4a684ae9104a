"""The web server: a FastAPI app over one model (REST API + a drawing page), and a runner for it.

``create_app(path)`` builds the app; ``serve(path, host, port, workers)`` runs it with uvicorn.
"""

from __future__ import annotations

from digitlab.serve.app import create_app, create_app_from_env
from digitlab.serve.server import serve

__all__ = ["create_app", "create_app_from_env", "serve"]
