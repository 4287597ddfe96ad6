"""Fixtures shared by several test modules."""

import functools
import http.server
import threading

import pytest


@pytest.fixture()
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1; yields ``(base_url, folder, stop)``."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop():
        if not stopped:
            httpd.shutdown()
            httpd.server_close()
            stopped.append(True)

    yield f"http://127.0.0.1:{httpd.server_address[1]}", www, stop
    stop()


@pytest.fixture()
def register():
    """Register weights (``ModelSpec``) or architectures for one test, through the registry's
    public API; they are removed afterwards. Returns what it registered."""
    from napari_cosas.models import registry

    added = []

    def add(entry):
        if hasattr(entry, "filename"):  # weights (test_registry reloads the module: no isinstance)
            registry.register(entry)
        else:
            registry.register_architecture(entry)
        added.append(entry.name)
        return entry

    yield add
    for name in reversed(added):
        registry.unregister(name)
