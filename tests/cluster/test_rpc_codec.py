"""The bus codec: msgpack values and the allow-listed extension types."""

from __future__ import annotations

import datetime
from typing import Any

import msgpack
import pytest

from plait.cluster._rpc_codec import EXT_DATETIME, EXT_DEFERRED, EXT_EXCEPTION, Codec
from plait.cluster.rpc import CodecError, RemoteError

MINUS_FIVE = datetime.timezone(datetime.timedelta(hours=-5))


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class AppError(Exception):
    pass


def roundtrip(value: Any, codec: Codec | None = None) -> Any:
    codec = codec or Codec()
    return codec.unpackb(codec.packb(value))


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 2**63, 1.5, "text", b"bytes", [1, [2]], {"a": {"b": [None]}}, ""],
)
def test_plain_values_survive_the_trip(value: Any) -> None:
    assert roundtrip(value) == value
    assert type(roundtrip(value)) is type(value)


def test_bytes_and_str_stay_apart() -> None:
    assert roundtrip([b"x", "x"]) == [b"x", "x"]
    assert [type(v) for v in roundtrip([b"x", "x"])] == [bytes, str]


def test_tuples_arrive_as_lists() -> None:
    assert roundtrip((1, 2)) == [1, 2]


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 11, 25, 12, 0, 1, 234567),
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=MINUS_FIVE),
    ],
)
def test_datetimes_keep_their_time_zone_or_its_absence(value: datetime.datetime) -> None:
    back = roundtrip(value)
    assert back == value and back.tzinfo == value.tzinfo


def test_datetime_travels_as_extension_one_holding_iso_text() -> None:
    value = datetime.datetime(2026, 1, 2, 3, 4, 5)
    raw = msgpack.unpackb(Codec().packb(value))
    assert raw == msgpack.ExtType(EXT_DATETIME, b"2026-01-02T03:04:05")


def test_registered_exceptions_come_back_as_themselves() -> None:
    back = roundtrip(ValueError("bad", 3))
    assert type(back) is ValueError and back.args == ("bad", 3)


def test_unregistered_exceptions_come_back_as_remote_errors_with_their_name() -> None:
    back = roundtrip(AppError("boom"))
    assert isinstance(back, RemoteError)
    assert back.remote_type == "tests.cluster.test_rpc_codec.AppError"
    assert back.message == "boom"


def test_an_exception_class_can_be_registered_under_a_name() -> None:
    codec = Codec()
    codec.register_exception(AppError, "app.AppError")
    back = roundtrip(AppError("boom"), codec)
    assert type(back) is AppError and back.args == ("boom",)


def test_exception_with_unencodable_args_keeps_its_message() -> None:
    back = roundtrip(ValueError(object()))
    assert type(back) is ValueError and "object" in back.args[0]


def test_exception_wire_form_is_name_message_args() -> None:
    raw = msgpack.unpackb(Codec().packb(KeyError("k")))
    assert raw.code == EXT_EXCEPTION
    assert msgpack.unpackb(raw.data) == ["KeyError", "'k'", ["k"]]


def test_register_exception_refuses_non_exceptions() -> None:
    with pytest.raises(TypeError):
        Codec().register_exception(int)  # type: ignore[arg-type]


def test_application_types_round_trip_through_their_code() -> None:
    codec = Codec()
    codec.register_type(
        64, Point, lambda p: bytes([p.x, p.y]), lambda data: Point(data[0], data[1])
    )
    back = roundtrip(Point(3, 4), codec)
    assert (back.x, back.y) == (3, 4)


@pytest.mark.parametrize("code", [0, 1, 63, 128, -1])
def test_application_codes_outside_64_to_127_are_refused(code: int) -> None:
    with pytest.raises(ValueError):
        Codec().register_type(code, Point, bytes, Point)  # type: ignore[arg-type]


def test_an_application_code_cannot_be_taken_twice() -> None:
    codec = Codec()
    codec.register_type(64, Point, lambda p: b"", lambda d: None)
    with pytest.raises(ValueError):
        codec.register_type(64, AppError, lambda p: b"", lambda d: None)


@pytest.mark.parametrize("value", [{1, 2}, object(), Point(1, 2), complex(1, 2)])
def test_unregistered_types_have_no_encoding(value: Any) -> None:
    with pytest.raises(CodecError):
        Codec().packb(value)


def test_the_codec_is_usable_after_an_encoding_failure() -> None:
    codec = Codec()
    with pytest.raises(CodecError):
        codec.packb([1, {2}])
    assert codec.unpackb(codec.packb([1, 2])) == [1, 2]


def test_deferreds_are_refused_without_hooks() -> None:
    from plait.cluster.defer import Deferred

    codec = Codec(deferred_type=Deferred)
    with pytest.raises(CodecError):
        codec.packb(Deferred())


def test_deferred_hooks_turn_deferreds_into_references_and_back() -> None:
    from plait.cluster.defer import Deferred

    sent: list[object] = []

    def export(d: object) -> int:
        sent.append(d)
        return 7

    codec = Codec(
        encode_deferred=export,
        decode_reference=lambda ref: ("ref", ref),
        deferred_type=Deferred,
    )
    d: Deferred[int] = Deferred()
    data = codec.packb({"later": d})
    assert sent == [d]
    assert msgpack.unpackb(data)["later"] == msgpack.ExtType(EXT_DEFERRED, msgpack.packb(7))
    assert codec.unpackb(data) == {"later": ("ref", 7)}


# ------------------------------------------------------------------ hostile bytes


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x01",  # array of 2 with 1 element: truncated
        b"\x01\x02",  # two values: extra data
        b"\xa3ab",  # str truncated
        b"\xa2\xff\xfe",  # invalid UTF-8 in a str
        msgpack.packb({1: 2}),  # a non-string map key
        msgpack.packb(msgpack.ExtType(99, b"")),  # an unregistered application code
        msgpack.packb(msgpack.ExtType(EXT_DEFERRED, msgpack.packb(1))),  # no hooks
        msgpack.packb(msgpack.ExtType(EXT_DATETIME, b"not a date")),
        msgpack.packb(msgpack.ExtType(EXT_EXCEPTION, msgpack.packb("nope"))),
        msgpack.packb(msgpack.ExtType(EXT_EXCEPTION, b"\xc1")),
        b"\x91" * 100_000 + b"\x00",  # nesting far too deep
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion elements
    ],
)
def test_garbage_raises_codec_error_only(data: bytes) -> None:
    with pytest.raises(CodecError):
        Codec().unpackb(data)


def test_msgpack_timestamps_from_other_implementations_arrive_as_utc_datetimes() -> None:
    back = Codec().unpackb(b"\xd6\xff\x00\x00\x00\x3c")  # extension -1: 60 s after the epoch
    assert back == datetime.datetime(1970, 1, 1, 0, 1, tzinfo=datetime.UTC)


def test_bytes_map_keys_are_allowed_but_stay_bytes() -> None:
    assert Codec().unpackb(msgpack.packb({b"k": 1})) == {b"k": 1}


def test_an_exception_whose_constructor_refuses_its_args_becomes_a_remote_error() -> None:
    class Picky(Exception):
        def __init__(self) -> None:
            super().__init__()

    codec = Codec()
    codec.register_exception(Picky, "Picky")
    data = msgpack.packb(msgpack.ExtType(EXT_EXCEPTION, msgpack.packb(["Picky", "m", [1]])))
    back = codec.unpackb(data)
    assert isinstance(back, RemoteError) and back.remote_type == "Picky"
