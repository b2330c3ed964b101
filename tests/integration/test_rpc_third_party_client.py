"""A third-party client written from docs/rpc-wire.md alone: pyzmq and msgpack, no Plait.

Everything Plait-specific here comes from the document; the bus runs in a child
process (tests/integration/rpc_child.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

CHILD = Path(__file__).with_name("rpc_child.py")


class Client:
    """A DEALER speaking the documented layout: one frame, one msgpack map."""

    def __init__(self, endpoint: str, name: str = "third-party") -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.name = name

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(msgpack.packb(message, use_bin_type=True))

    def recv(self, timeout_ms: int = 5000) -> Any:
        assert self.sock.poll(timeout_ms), "no answer from the bus"
        return msgpack.unpackb(self.sock.recv(), raw=False, ext_hook=self.ext)

    def silent(self, timeout_ms: int = 300) -> bool:
        return not self.sock.poll(timeout_ms)

    @staticmethod
    def ext(code: int, data: bytes) -> Any:
        if code == 1:
            return ("datetime", data.decode())
        if code == 2:
            return ("ref", msgpack.unpackb(data))
        if code == 3:
            return ("exception", msgpack.unpackb(data, raw=False))
        return msgpack.ExtType(code, data)

    def hello(self, methods: list[str] = (), topics: list[str] = ()) -> Any:  # type: ignore[assignment]
        self.send({"v": 1, "t": "hello", "node": self.name, "methods": list(methods),
                   "topics": list(topics)})
        return self.recv()

    def call(self, call_id: int, method: str, *args: Any, **fields: Any) -> Any:
        self.send({"v": 1, "t": "call", "id": call_id, "method": method, "args": list(args),
                   **fields})
        return self.recv()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "server", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def client(endpoint: str, request: pytest.FixtureRequest) -> Iterator[Client]:
    c = Client(endpoint, name=f"third-party-{request.node.name}")
    yield c
    c.close()


def test_hello_is_answered_with_welcome_listing_the_methods(client: Client) -> None:
    welcome = client.hello()
    assert welcome["v"] == 1 and welcome["t"] == "welcome" and welcome["node"] == "server"
    assert {"add", "echo", "never", "fail"} <= set(welcome["methods"])
    assert isinstance(welcome["topics"], list)


def test_a_call_gets_a_result_with_its_id(client: Client) -> None:
    client.hello()
    assert client.call(7, "add", 40, 2) == {"v": 1, "t": "result", "id": 7, "value": 42}


def test_kwargs_bytes_str_and_datetimes_keep_their_types(client: Client) -> None:
    client.hello()
    when = msgpack.ExtType(1, b"2026-11-25T12:00:01+00:00")
    answer = client.call(1, "echo", b"raw", "text", when, kwargs={"k": [1, None]})
    assert answer["value"] == [
        [b"raw", "text", ("datetime", "2026-11-25T12:00:01+00:00")],
        {"k": [1, None]},
    ]


def test_unknown_methods_and_failures_come_back_as_documented_errors(client: Client) -> None:
    client.hello()
    missing = client.call(1, "nope")
    assert missing["t"] == "error" and missing["id"] == 1
    assert missing["error"]["type"] == "plait.cluster.rpc.NoSuchMethod"
    assert missing["error"]["message"] == "nope"
    failed = client.call(2, "fail")
    assert failed["error"]["type"] == "ZeroDivisionError"
    assert "ZeroDivisionError" in failed["error"]["traceback"]
    wrong = client.call(3, "add", 1)
    assert wrong["error"]["type"] == "TypeError"


def test_nothing_is_answered_before_hello(client: Client) -> None:
    client.send({"v": 1, "t": "call", "id": 1, "method": "add", "args": [1, 2]})
    assert client.silent()
    client.hello()
    assert client.call(2, "add", 1, 2)["value"] == 3


def test_a_cancelled_call_gets_no_answer_and_the_session_goes_on(client: Client) -> None:
    client.hello()
    client.send({"v": 1, "t": "call", "id": 1, "method": "never"})
    client.send({"v": 1, "t": "cancel", "id": 1})
    assert client.silent()
    assert client.call(2, "add", 2, 2)["value"] == 4


def test_a_call_past_its_deadline_gets_no_answer(client: Client) -> None:
    client.hello()
    client.send({"v": 1, "t": "call", "id": 1, "method": "never", "timeout": 0.05})
    assert client.silent(400)


def test_notify_is_one_way(client: Client) -> None:
    client.hello()
    client.send({"v": 1, "t": "notify", "method": "fail", "args": [], "kwargs": {}})
    assert client.silent()


def test_a_deferred_in_a_result_is_a_reference_followed_by_ref_result(client: Client) -> None:
    client.hello()
    answer = client.call(1, "later", 0.05)
    kind, ref = answer["value"]["done"]
    assert kind == "ref" and isinstance(ref, int)
    assert client.recv() == {"v": 1, "t": "ref-result", "ref": ref, "value": "later"}


def test_publish_reaches_a_third_party_that_listed_the_topic(client: Client) -> None:
    client.hello(topics=["news"])
    # The handler publishes before it returns, so the publish comes first.
    assert client.call(1, "announce", "news", {"n": 1}) == {
        "v": 1, "t": "publish", "topic": "news", "msg": {"n": 1}
    }
    assert client.recv() == {"v": 1, "t": "result", "id": 1, "value": 1}


def test_a_third_party_can_serve_calls_too(client: Client) -> None:
    client.hello(methods=["shout"])
    client.send({"v": 1, "t": "call", "id": 1, "method": "ask",
                 "args": [client.name, "shout", "hi"]})
    incoming = client.recv()
    assert incoming["t"] == "call" and incoming["method"] == "shout"
    assert incoming["args"] == ["hi"]
    client.send({"v": 1, "t": "result", "id": incoming["id"], "value": "HI"})
    assert client.recv() == {"v": 1, "t": "result", "id": 1, "value": "HI"}


def test_other_versions_are_ignored(client: Client) -> None:
    client.hello()
    client.send({"v": 2, "t": "call", "id": 1, "method": "add", "args": [1, 2]})
    assert client.silent()


def test_bye_ends_the_session(client: Client) -> None:
    client.hello()
    client.send({"v": 1, "t": "bye"})
    client.send({"v": 1, "t": "call", "id": 1, "method": "add", "args": [1, 2]})
    assert client.silent()

