"""Open the written ``*.snn.onnx`` in Netron (the ``netron`` package: ``pip install 'onnx2snn[netron]'``).

Netron serves the file on 127.0.0.1 only and, where there is a browser, opens it there; elsewhere
(a server, a container) the address is printed to open from a browser that can reach it.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Tuple

from .errors import Onnx2SnnError

INSTALL = "pip install 'onnx2snn[netron]'"


def check_available() -> None:
    """Fail before any conversion work when ``--netron`` is asked for and Netron is not installed."""
    if importlib.util.find_spec("netron") is None:
        raise Onnx2SnnError(f"--netron needs the netron package, which is not installed: {INSTALL}")


def check_port(port: int) -> None:
    """``port`` must be free on 127.0.0.1 (checked before the conversion, so that a busy port does not
    cost one)."""
    import socket
    if not 1 <= port <= 65535:
        raise Onnx2SnnError(f"--port {port}: expected a port number in 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise Onnx2SnnError(f"--port {port}: 127.0.0.1:{port} cannot be served ({e.strerror or e}); choose "
                                "another port, or leave --port out for a free one") from None


def serve(path: str, port: int = 0, browse: bool = True) -> Tuple[str, int]:
    """Serve ``path`` with Netron on 127.0.0.1 (``port`` 0: a free one); returns the (host, port)."""
    check_available()
    import netron
    browse = browse and _has_browser()
    return tuple(netron.start(os.fspath(path), address=("127.0.0.1", port), browse=browse))


def stop(address: Tuple[str, int], timeout: float = 5.0) -> None:
    """Stop serving; returns once Netron reports the server gone (at most ``timeout`` seconds)."""
    import time
    import netron
    netron.stop(address)
    end = time.monotonic() + timeout
    while netron.status(address) and time.monotonic() < end:
        time.sleep(0.05)


def _has_browser() -> bool:
    """A browser can be opened here: a desktop session, or a browser named in $BROWSER."""
    import webbrowser
    if os.environ.get("BROWSER"):
        return True
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
            and not os.path.exists("/System/Library"):  # macOS opens browsers without $DISPLAY
        return False
    try:
        webbrowser.get()
        return True
    except webbrowser.Error:
        return False
