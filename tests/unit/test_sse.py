"""SSEDecoder against the WHATWG event-stream rules, under every way of chunking the bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from baseten_magic.core.sse import ServerSentEvent, SSEDecoder

STREAMS = Path(__file__).parents[1] / "fixtures" / "streams"


def E(data: str, event: str = "message", id: str = "", retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


# (name, bytes on the wire, events a conformant decoder dispatches)
CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    ("one event", b"data: hello\n\n", [E("hello")]),
    ("two events", b"data: a\n\ndata: b\n\n", [E("a"), E("b")]),
    ("json payloads", b'data: {"a": 1}\n\ndata: [DONE]\n\n', [E('{"a": 1}'), E("[DONE]")]),
    ("leading BOM", b"\xef\xbb\xbfdata: x\n\n", [E("x")]),
    # Only ONE BOM is dropped: the second makes the field name "\ufeffdata", which is ignored.
    ("second BOM kept", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n", [E("y")]),
    ("BOM not at start kept", b"data: \xef\xbb\xbfx\n\n", [E("\ufeffx")]),
    ("CR line ends", b"data: a\r\rdata: b\r\r", [E("a"), E("b")]),
    ("CRLF line ends", b"data: a\r\n\r\ndata: b\r\n\r\n", [E("a"), E("b")]),
    ("mixed line ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [E("a\nb\nc")]),
    ("CR then CRLF is two ends", b"data: a\r\r\ndata: b\n\n", [E("a"), E("b")]),
    ("LF CR is two ends", b"data: a\n\rdata: b\n\n", [E("a"), E("b")]),
    ("multibyte", "data: héllo — 日本 🎉\n\n".encode(), [E("héllo — 日本 🎉")]),
    ("invalid byte", b"data: a\xffb\n\n", [E("a\ufffdb")]),
    ("truncated sequence", b"data: \xe6\x97\n\ndata: ok\n\n", [E("\ufffd"), E("ok")]),
    ("lone continuation", b"data: \x80\x80z\n\n", [E("\ufffd\ufffdz")]),
    (
        "unicode line separators are data",
        "data: a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg\n\n".encode(),
        [E("a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg")],
    ),
    ("comment", b": keep-alive\n\ndata: x\n\n", [E("x")]),
    ("bare colon comment", b":\ndata: x\n:\n\n", [E("x")]),
    ("keep-alive after id is no event", b"id: 7\n: ping\n\n", []),
    ("id then keep-alive then data", b"id: 7\n: ping\n\ndata: x\n\n", [E("x", id="7")]),
    ("blank lines alone", b"\n\n\n\r\n\r", []),
    ("event without data", b"event: foo\n\n", []),
    ("event type resets at blank line", b"event: foo\n\ndata: x\n\n", [E("x")]),
    ("event type", b"event: add\ndata: x\n\ndata: y\n\n", [E("x", event="add"), E("y")]),
    ("empty event type is message", b"event:\ndata: x\n\n", [E("x")]),
    ("multiple data lines", b"data: a\ndata: b\ndata:\ndata: c\n\n", [E("a\nb\n\nc")]),
    ("empty data dispatches", b"data:\n\n", [E("")]),
    ("data field without colon", b"data\n\n", [E("")]),
    ("two bare data fields", b"data\ndata\n\n", [E("\n")]),
    ("data without space", b"data:x\n\n", [E("x")]),
    ("only one space stripped", b"data:  x \n\n", [E(" x ")]),
    ("tab is not stripped", b"data:\tx\n\n", [E("\tx")]),
    ("colon in value", b"data: a: b\n\n", [E("a: b")]),
    ("field name with leading space", b" data: x\n\ndata: y\n\n", [E("y")]),
    ("unknown field ignored", b"foo: bar\ndata: x\nDATA: no\n\n", [E("x")]),
    ("unterminated line at EOF", b"data: x", []),
    ("unterminated event at EOF", b"data: x\n", []),
    ("event then unterminated one", b"data: x\n\ndata: y\n", [E("x")]),
    ("id", b"id: abc\ndata: x\n\n", [E("x", id="abc")]),
    ("id persists", b"id: abc\ndata: x\n\ndata: y\n\n", [E("x", id="abc"), E("y", id="abc")]),
    (
        "id with NUL ignored",
        b"id: 1\ndata: x\n\nid: a\x00b\ndata: y\n\n",
        [E("x", id="1"), E("y", id="1")],
    ),
    ("empty id resets", b"id: 1\ndata: x\n\nid\ndata: y\n\n", [E("x", id="1"), E("y")]),
    ("retry", b"retry: 1500\ndata: x\n\n", [E("x", retry=1500)]),
    ("retry per event", b"retry: 1500\ndata: x\n\ndata: y\n\n", [E("x", retry=1500), E("y")]),
    ("retry with letter ignored", b"retry: 15a\ndata: x\n\n", [E("x")]),
    ("retry negative ignored", b"retry: -1\ndata: x\n\n", [E("x")]),
    ("retry empty ignored", b"retry:\ndata: x\n\n", [E("x")]),
    ("retry non-ascii digits ignored", "retry: ١٢\ndata: x\n\n".encode(), [E("x")]),
    ("retry superscript ignored", "retry: ²\ndata: x\n\n".encode(), [E("x")]),
    (
        "chat stream with keep-alives",
        b'data: {"a":1}\n\n: ping\n\ndata: {"b":2}\n\ndata: [DONE]\n\n',
        [E('{"a":1}'), E('{"b":2}'), E("[DONE]")],
    ),
    ("NUL in data kept", b"data: a\x00b\n\n", [E("a\x00b")]),
    ("half a character before a line", b"data: a\n\n\xe6data: b\n\ndata: c\n\n", [E("a"), E("c")]),
    ("CR inside a run of events", b"data: a\n\ndata: b\rc\n\n", [E("a"), E("b")]),
]


def decode(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


@pytest.mark.parametrize(("name", "wire", "expected"), CASES, ids=[case[0] for case in CASES])
def test_whole(name: str, wire: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode([wire]) == expected


@pytest.mark.parametrize(("name", "wire", "expected"), CASES, ids=[case[0] for case in CASES])
def test_split_in_two_at_every_offset(
    name: str, wire: bytes, expected: list[ServerSentEvent]
) -> None:
    for offset in range(len(wire) + 1):
        assert decode([wire[:offset], wire[offset:]]) == expected, f"split at {offset}"


@pytest.mark.parametrize(("name", "wire", "expected"), CASES, ids=[case[0] for case in CASES])
def test_one_byte_at_a_time(name: str, wire: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode([wire[i : i + 1] for i in range(len(wire))]) == expected


@pytest.mark.parametrize(("name", "wire", "expected"), CASES, ids=[case[0] for case in CASES])
def test_split_in_three_everywhere(name: str, wire: bytes, expected: list[ServerSentEvent]) -> None:
    # Three pieces reach states two cannot: e.g. a whole event, then half a character, then
    # a chunk that alone would look like a clean run of events.
    for first in range(1, len(wire)):
        for second in range(first, len(wire)):
            pieces = [wire[:first], wire[first:second], wire[second:]]
            assert decode(pieces) == expected, f"split at {first}, {second}"


def test_partial_character_between_whole_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [E("a")]
    assert decoder.feed(b"\xe6") == []
    # The held byte turns into U+FFFD, so this line's field name is "\ufffddata": ignored.
    assert decoder.feed(b"data: b\n\n") == []
    assert decoder.feed(b"data: c\n\n") == [E("c")]


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the LF completes the CRLF; it is not a blank line
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\r") == [E("a\nb")]


def test_bom_split_across_chunks_is_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.feed(b"\xbfdata: x\n") == []
    assert decoder.feed(b"\n") == [E("x")]


def test_close_discards_pending_event_and_resets() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\nevent: e\ndata: partial\n") == []
    assert decoder.close() == []
    # After close the decoder starts afresh: no leftover id, event type, data or BOM state.
    assert decoder.feed(b"\xef\xbb\xbfdata: next\n\n") == [E("next")]


def test_events_are_frozen_values() -> None:
    event = decode([b"data: x\n\n"])[0]
    assert event == ServerSentEvent(data="x")
    assert not hasattr(event, "__dict__")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]


def test_long_line_in_small_chunks() -> None:
    value = "ж" * 100_000
    wire = f"data: {value}\n\n".encode()
    assert decode([wire[i : i + 97] for i in range(0, len(wire), 97)]) == [E(value)]


@pytest.mark.parametrize("path", sorted(STREAMS.glob("*.sse")), ids=lambda path: path.name)
def test_fixture_streams_survive_any_chunking_and_line_ends(path: Path) -> None:
    wire = path.read_bytes()
    expected = decode([wire])
    blocks = wire.split(b"\n\n")
    assert [event.data for event in expected] == [
        block[6:].decode() for block in blocks if block.startswith(b"data: ")
    ]
    rng = random.Random(path.name)
    for line_end in (b"\n", b"\r\n", b"\r"):
        variant = wire.replace(b"\n", line_end)
        assert decode([variant]) == expected
        for _ in range(20):
            cuts = sorted(rng.sample(range(1, len(variant)), 12))
            pieces = [variant[a:b] for a, b in zip([0, *cuts], [*cuts, len(variant)], strict=True)]
            assert decode(pieces) == expected
        # Chunked at event boundaries, as a server writing one event per token would.
        per_event = [block + line_end * 2 for block in variant.split(line_end * 2) if block]
        assert decode(per_event) == expected
