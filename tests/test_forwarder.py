"""The Forwarder on its own: keep-alive connections, reused while they are good."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fake_ollama import FakeOllama, serve
from werkzeug.test import Client

from ollama_default.forwarder import Forwarder


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection http.client opens, by address."""
    opened: list[tuple[str, int]] = []
    create_connection = socket.create_connection

    def counting(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        opened.append(address)
        return create_connection(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


@pytest.fixture
def client() -> Iterator[Client]:
    with serve(FakeOllama()) as url:
        forwarder = Forwarder(url)
        yield Client(forwarder)
        forwarder.close()


def test_one_connection_serves_requests_one_after_another(
    client: Client, connects: list[tuple[str, int]]
) -> None:
    bodies = [
        {"model": "llama3.2", "prompt": "hi", "stream": False},  # Content-Length
        {"model": "llama3.2", "prompt": "hi"},  # chunked NDJSON
        {"model": "llama3.2", "prompt": "hi", "stream": False},
    ]
    for body in bodies:
        with client.post("/api/generate", json=body) as response:
            assert response.status_code == 200
            assert b'"model":"llama3.2"' in response.get_data()
    with client.head("/api/tags") as response:
        assert response.status_code == 200
    assert len(connects) == 1


def test_a_stream_the_client_left_does_not_go_back_to_the_pool(
    client: Client, connects: list[tuple[str, int]]
) -> None:
    response = client.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "hi"}, buffered=False
    )
    next(iter(response.response))  # one record, then the client goes away
    response.close()
    with client.get("/api/version") as version:
        assert version.status_code == 200
    assert len(connects) == 2  # the half-read connection was closed, not reused
