"""The C scanner (``mailward.policy._scan``) against the Python it replaces.

Built with the compiled package only: the compiled test run executes this module and
``tests/test_speedups.py`` fails there if the scanner is missing.
"""

import asyncio
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.policy.test_postfix import _READ_LINE, request

from mailward.clock import ManualClock
from mailward.config.model import PostfixPolicySettings
from mailward.decisions.model import Action, Decision
from mailward.errors import ProtocolError
from mailward.policy import postfix
from mailward.policy.backend import MemoryBackend
from mailward.policy.postfix import MAX_LINES, PostfixPolicyServer
from mailward.policy.postfix_rules import READS

c_scanner: Any = pytest.importorskip(
    "mailward.policy._scan", reason="the C scanner is built with the compiled package only"
)


def _take_reference(buf: bytearray, start: int, limit: int) -> tuple[str, Any]:
    """What ``take`` must agree with: ``find`` and the pure-Python reader."""
    end = buf.find(b"\n\n", start)
    if end < 0:
        return ("slow", None) if len(buf) - start > limit else ("incomplete", None)
    if end - start > limit:
        return ("slow", None)
    try:
        return ("next", (end + 2, postfix.read_request_py(bytes(buf[start:end]), MAX_LINES)))
    except ProtocolError:
        return ("slow", None)


_STREAM_PART = st.one_of(
    _READ_LINE,
    st.sampled_from([b"", b"\n", b"sasl_username=\xc3\xbc", b"instance=" + b"i" * 80]),
)


@given(
    parts=st.lists(st.lists(_STREAM_PART, max_size=8), max_size=5),
    tail=st.binary(max_size=12),
    limit=st.integers(10, 120),
)
def test_take_frames_and_reads_each_request_like_find_and_the_python_reader(
    parts: list[list[bytes]], tail: bytes, limit: int
) -> None:
    # several requests back to back in one buffer, then maybe the start of another
    buf = bytearray(b"".join(b"\n".join(lines) + b"\n\n" for lines in parts) + tail)
    into: dict[str, str] = {"stale": "x", "recipient": "left from the last request"}
    start = 0
    while True:
        got = c_scanner.take(buf, READS, MAX_LINES, start, limit, into)
        kind, want = _take_reference(buf, start, limit)
        if kind == "next":
            assert (got, {k: v for k, v in into.items() if k in READS}) == want
            start = got
            continue
        assert got == (-1 if kind == "incomplete" else -2)
        break


@given(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"\n")), st.integers(0, 40))
def test_frame_finds_what_find_finds(buf: bytes, start: int) -> None:
    start = min(start, len(buf))
    end = buf.find(b"\n\n", start)
    assert c_scanner.frame(bytearray(buf), start) == (end + 2 if end >= 0 else -1)


def test_take_and_frame_refuse_wrong_arguments_instead_of_crashing() -> None:
    take: Any = c_scanner.take
    frame: Any = c_scanner.frame
    with pytest.raises(TypeError):
        take(b"a=1\n\n", READS, 10, 0, 100)  # no dict to fill
    with pytest.raises(TypeError):
        take(b"a=1\n\n", READS, 10, 0, 100, [])
    with pytest.raises(TypeError):
        take("a=1\n\n", READS, 10, 0, 100, {})
    with pytest.raises(ValueError):
        take(b"a=1\n\n", READS, 10, 9, 100, {})
    with pytest.raises(TypeError):
        frame(b"a=1\n\n")
    with pytest.raises(ValueError):
        frame(b"a=1\n\n", -1)
    into: dict[str, str] = {}
    assert take(bytearray(b"a=1\n\na=\xff\n\n"), ("a",), 10, 5, 100, into) == 10
    assert into == {"a": "\udcff"}


class _Collect(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


_STREAM_REQUEST = st.one_of(
    st.builds(
        lambda state, ip, user: request(
            protocol_state=state, client_address=ip, sasl_username=user
        ),
        st.sampled_from(["CONNECT", "RCPT", "DATA"]),
        st.sampled_from(["192.0.2.1", "192.0.2.9", "2001:db8::1", "bogus"]),
        st.sampled_from(["", "bob"]),
    ),
    st.sampled_from([b"request=junk\n\n", b"noequals\n\n", b"\n\n", b"a=" + b"x" * 600]),
)


@given(reqs=st.lists(_STREAM_REQUEST, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 900)))
def test_a_connection_answers_a_stream_the_same_with_and_without_the_c_scanner(
    reqs: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(reqs)
    edges = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    chunks = [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]

    async def feed(take: Any) -> tuple[bytes, bool, int]:
        backend = MemoryBackend()
        backend.apply(Decision(0, "192.0.2.9", Action.BAN, "manual"))
        srv = PostfixPolicyServer(
            PostfixPolicySettings(
                listen=["inet:127.0.0.1:0"], socket_group=None, max_request_bytes=512
            ),
            backend=backend,
            clock=ManualClock(1000.0),
        )
        await srv.start()
        try:
            with patch.object(postfix, "_take", take):
                conn = postfix._PolicyConnection(srv)
                transport = _Collect()
                conn.connection_made(transport)
                for chunk in chunks:
                    if transport.closed:
                        break
                    conn.data_received(memoryview(chunk))
                srv.replies.flush()
            return bytes(transport.out), transport.closed, srv.core.stats.malformed
        finally:
            await srv.stop()

    assert asyncio.run(feed(c_scanner.take)) == asyncio.run(feed(None))


def _pton(text: str) -> int:
    from socket import AF_INET, inet_pton

    try:
        return int.from_bytes(inet_pton(AF_INET, text), "big")
    except (OSError, ValueError):
        return -1


_QUADS = st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t)))


@given(
    st.one_of(
        _QUADS,
        _QUADS.map(lambda q: "0" + q),
        _QUADS.map(lambda q: q.replace(".", ".0", 1)),
        _QUADS.map(lambda q: q + "."),
        _QUADS.map(lambda q: q + ".1"),
        _QUADS.map(lambda q: q + "%lo"),
        st.text("0123456789.:x %-+ \x00\u0661", max_size=18),
        st.text(max_size=18),
    )
)
def test_ipv4_reads_dotted_quads_as_inet_pton_does(text: str) -> None:
    assert c_scanner.ipv4(text) == _pton(text)


def test_ipv4_edges() -> None:
    assert c_scanner.ipv4("0.0.0.0") == 0
    assert c_scanner.ipv4("255.255.255.255") == 2**32 - 1
    for bad in (
        "256.0.0.1",
        "1.2.3",
        "1.2.3.04",
        "1..2.3",
        " 1.2.3.4",
        "::ffff:1.2.3.4",
        "1.2.3.4\x00",
    ):
        assert c_scanner.ipv4(bad) == -1
    with pytest.raises(TypeError):
        c_scanner.ipv4()
    assert c_scanner.ipv4(b"1.2.3.4") == -1  # not text: the Python parser judges (and refuses)
