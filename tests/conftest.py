"""Test-wide setup: offline hubs, no network, deterministic torch.

HF_HUB_OFFLINE must be set before anything imports huggingface_hub (it is read at import).
Every socket connection is refused loudly, so a test that touches the network fails.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MFOLLOW_DEBUG", None)

import socket

import pytest


class NetworkAccessError(RuntimeError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkAccessError(f"a test tried to open a network connection: {args!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
