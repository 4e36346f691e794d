"""The real frontend, bound as Ray Serve binds it, over a fake engine (see tests/api/ingress.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def served(tiny_model):
    """``(asgi_app, FakeEngineHandle)``: one frontend replica for the session's API tests."""
    from tests.api.ingress import serve_frontend

    return serve_frontend(tiny_model)


@pytest.fixture(scope="session")
def client(served):
    """A client that calls the frontend in-process (schemathesis' ASGI client: one shared loop)."""
    from schemathesis.python import asgi

    with asgi.get_client(served[0]) as client:
        yield client
