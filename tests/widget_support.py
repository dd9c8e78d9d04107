"""Headless widget testing: a comm that counts what widgets send (like ipywidgets' DummyComm)."""

from __future__ import annotations

import comm
import pytest


class CountingComm:
    """Records every message a widget sends instead of sending it."""

    kernel = "fake"  # widgets only send when their comm has a kernel
    made = 0

    def __init__(self, **kwargs) -> None:
        CountingComm.made += 1
        self.comm_id = f"comm-{CountingComm.made}"
        self.messages: list[dict] = []

    def open(self, *args, **kwargs) -> None:
        pass

    def on_msg(self, *args, **kwargs) -> None:
        pass

    def send(self, data=None, **kwargs) -> None:
        self.messages.append(data)

    def close(self, *args, **kwargs) -> None:
        pass


@pytest.fixture(autouse=True)
def counting_comm(monkeypatch):
    """Every widget created in the test gets a CountingComm."""
    monkeypatch.setattr(comm, "create_comm", lambda **kwargs: CountingComm(**kwargs))
