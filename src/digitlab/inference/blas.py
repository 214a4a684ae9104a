"""One BLAS thread for the small matrix products of reading a picture.

The not-a-digit detector and the sequence reader multiply small matrices with numpy. With
NumPy's BLAS on several threads, those threads keep spinning for a while after each product and
take the cores from PyTorch's threads, which run the model right after: on two cores, reading a
digit took twice as long. :func:`one_thread` runs a block with one BLAS thread (a few
microseconds to set and restore, by way of ``threadpoolctl``), leaving the rest of the process as
it was.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_blas = None


def one_thread() -> AbstractContextManager:
    """A context in which NumPy's BLAS uses one thread."""
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = ThreadpoolController().select(user_api="blas")
    return _blas.limit(limits=1)
