"""The wire format, version 1: every message type round-trips, and bad input is named."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from plait.cluster._rpc_codec import Codec
from plait.cluster._rpc_wire import (
    VERSION,
    Bye,
    Call,
    Cancel,
    Error,
    ErrorInfo,
    Hello,
    Message,
    Notify,
    Publish,
    RefCancel,
    RefError,
    RefResult,
    Result,
    decode,
    encode,
)
from plait.cluster.rpc import WireError

INFO = ErrorInfo(type="ValueError", message="bad", traceback="Traceback...")

MESSAGES: list[Message] = [
    Hello(node="worker-0", methods=("add", "echo"), topics=("news",)),
    Hello(node="server", welcome=True),
    Call(id=1, method="add", args=[1, 2], kwargs={"x": b"y"}, timeout=2.5),
    Call(id=2**63 - 1, method="m", args=[], kwargs={}),
    Notify(method="log", args=["line"], kwargs={}),
    Result(id=1, value={"a": [1, None]}),
    Error(id=1, error=INFO),
    Cancel(id=9),
    Publish(topic="news", msg=[1, "two"]),
    RefResult(ref=3, value=b"done"),
    RefError(ref=3, error=INFO),
    RefCancel(ref=3),
    Bye(),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message: Message) -> None:
    codec = Codec()
    back = decode(encode(message, codec), codec)
    assert type(back) is type(message) and back == message


def test_a_call_is_a_plain_msgpack_map_a_third_party_can_write() -> None:
    data = msgpack.packb(
        {"v": 1, "t": "call", "id": 5, "method": "add", "args": [1, 2], "kwargs": {}}
    )
    assert decode(data, Codec()) == Call(id=5, method="add", args=[1, 2], kwargs={})


def test_optional_keys_default_and_unknown_keys_are_ignored() -> None:
    data = msgpack.packb({"v": 1, "t": "call", "id": 5, "method": "m", "future": 1})
    assert decode(data, Codec()) == Call(id=5, method="m", args=[], kwargs={}, timeout=None)


def test_the_version_is_one() -> None:
    assert VERSION == 1
    assert msgpack.unpackb(encode(Bye(), Codec())) == {"v": 1, "t": "bye"}


def reason(fields: Any) -> str:
    data = fields if isinstance(fields, bytes) else msgpack.packb(fields)
    with pytest.raises(WireError) as info:
        decode(data, Codec())
    return info.value.reason


@pytest.mark.parametrize(
    "fields",
    [b"\xc1garbage", b"", msgpack.packb([1, "t"]), msgpack.packb("hello"), b"\x81\xa1v"],
)
def test_garbage_is_named_garbage(fields: Any) -> None:
    assert reason(fields) == "garbage"


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.0, True, [1]])
def test_other_versions_are_named_version(version: Any) -> None:
    fields = {"t": "bye"} if version is None else {"v": version, "t": "bye"}
    assert reason(fields) == "version"


@pytest.mark.parametrize("kind", [None, "shout", "", 3, ["call"], {"a": 1}, b"call"])
def test_unknown_types_are_named_type(kind: Any) -> None:
    fields = {"v": 1} if kind is None else {"v": 1, "t": kind}
    assert reason(fields) == "type"


@pytest.mark.parametrize(
    "fields",
    [
        {"v": 1, "t": "call", "method": "m"},  # no id
        {"v": 1, "t": "call", "id": -1, "method": "m"},
        {"v": 1, "t": "call", "id": 2**64 - 1, "method": "m"},
        {"v": 1, "t": "call", "id": True, "method": "m"},
        {"v": 1, "t": "call", "id": 1.0, "method": "m"},
        {"v": 1, "t": "call", "id": 1, "method": b"m"},
        {"v": 1, "t": "call", "id": 1},
        {"v": 1, "t": "call", "id": 1, "method": "m", "args": {"a": 1}},
        {"v": 1, "t": "call", "id": 1, "method": "m", "kwargs": [1]},
        {"v": 1, "t": "call", "id": 1, "method": "m", "kwargs": {b"k": 1}},
        {"v": 1, "t": "call", "id": 1, "method": "m", "timeout": -1},
        {"v": 1, "t": "call", "id": 1, "method": "m", "timeout": float("nan")},
        {"v": 1, "t": "call", "id": 1, "method": "m", "timeout": float("inf")},
        {"v": 1, "t": "call", "id": 1, "method": "m", "timeout": "1"},
        {"v": 1, "t": "hello"},
        {"v": 1, "t": "hello", "node": ""},
        {"v": 1, "t": "hello", "node": "n", "methods": ["a", 1]},
        {"v": 1, "t": "hello", "node": "n", "topics": "abc"},
        {"v": 1, "t": "error", "id": 1},
        {"v": 1, "t": "error", "id": 1, "error": "boom"},
        {"v": 1, "t": "error", "id": 1, "error": {"type": "E"}},
        {"v": 1, "t": "error", "id": 1, "error": {"type": "E", "message": "m", "traceback": 1}},
        {"v": 1, "t": "result"},
        {"v": 1, "t": "cancel", "id": "1"},
        {"v": 1, "t": "publish", "msg": 1},
        {"v": 1, "t": "ref-result", "value": 1},
        {"v": 1, "t": "ref-cancel", "ref": None},
    ],
)
def test_missing_or_mistyped_fields_are_named_invalid(fields: dict[str, Any]) -> None:
    assert reason(fields) == "invalid"


def test_oversize_is_refused_before_parsing() -> None:
    data = msgpack.packb({"v": 1, "t": "result", "id": 1, "value": b"x" * 100})
    with pytest.raises(WireError) as info:
        decode(data, Codec(), max_size=50)
    assert info.value.reason == "oversize"
    assert decode(data, Codec(), max_size=len(data)).id == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("cut", [1, 5, 10, 20])
def test_truncated_messages_are_garbage(cut: int) -> None:
    data = encode(Call(id=1, method="add", args=[1, 2], kwargs={}), Codec())
    assert reason(data[:-cut]) == "garbage"


def test_hostile_map_keys_do_not_reach_python_names() -> None:
    fields = {"v": 1, "t": "call", "id": 1, "method": "m", "kwargs": {"__class__": 1, "a b": 2}}
    message = decode(msgpack.packb(fields), Codec())
    assert isinstance(message, Call) and message.kwargs == {"__class__": 1, "a b": 2}
