import asyncio
import json
import logging
import tempfile
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import shared_file

from mailward.clock import ManualClock
from mailward.config.model import PostfixPolicySettings
from mailward.decisions.model import Action, Decision
from mailward.errors import ProtocolError
from mailward.events import Disconnect, Service, UnknownRecipient
from mailward.policy import postfix
from mailward.policy.backend import MemoryBackend
from mailward.policy.postfix import (
    MAX_LINES,
    PostfixPolicyServer,
    encode_action,
    parse_request,
    read_request,
)
from mailward.policy.postfix_rules import READS

DUNNO = b"action=DUNNO\n\n"
BAN = b"action=421 4.7.0 Service unavailable, try again later\n\n"

# From real-stack-testing.md section 6: a RCPT request exactly as Postfix 3.7 sent it.
RCPT_REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=127.0.0.65\nclient_name=unknown\nclient_port=38989\nreverse_client_name=unknown\n"
    b"server_address=127.0.0.1\nserver_port=2525\nhelo_name=client.test\n"
    b"sender=bob@mail.test.invalid\nrecipient=alice@mail.test.invalid\nrecipient_count=0\nqueue_id=\n"
    b"instance=515d.6b0181d8.9591c.0\nsize=0\netrn_domain=\nstress=\nsasl_method=PLAIN\n"
    b"sasl_username=bob\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n"
    b"ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n"
    b"policy_context=\n\n"
)


def request(**attrs: str) -> bytes:
    attrs = {"request": "smtpd_access_policy", **attrs}
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


def test_parse_request_splits_on_the_first_equals_and_keeps_the_last_duplicate() -> None:
    raw = (
        b"request=smtpd_access_policy\nccert_subject=CN=a=b\nsender=\nsender=x@y\nrecipient_count=0"
    )
    attrs = parse_request(raw)
    assert attrs["ccert_subject"] == "CN=a=b"
    assert attrs["sender"] == "x@y"  # the last of a repeated name
    assert attrs["recipient_count"] == "0"


@pytest.mark.parametrize(
    "raw",
    [
        b"request=smtpd_access_policy\nno equals sign here",
        b"request=smtpd_access_policy\n=value without a name",
        b"request=junk\nclient_address=1.2.3.4",
        b"client_address=1.2.3.4",
        b"request=smtpd_access_policy\n" + b"a=b\n" * 200,
    ],
)
def test_parse_request_rejects_malformed_requests(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(raw)


def test_encode_action_cannot_forge_reply_lines() -> None:
    assert encode_action("REJECT a\nb") == b"action=REJECT a b\n\n"


@pytest.fixture
async def server() -> tuple[PostfixPolicyServer, MemoryBackend, ManualClock]:
    backend = MemoryBackend()
    clock = ManualClock(1000.0)
    sock = Path(tempfile.mkdtemp()) / "policy.sock"
    srv = PostfixPolicyServer(
        PostfixPolicySettings(
            listen=["inet:127.0.0.1:0", f"unix:{sock}"],
            socket_group=None,
            max_request_bytes=1024,
            max_connections_per_client=3,
        ),
        backend=backend,
        clock=clock,
    )
    await srv.start()
    yield srv, backend, clock
    await srv.stop()
    assert not sock.exists()


async def open_tcp(srv: PostfixPolicyServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = next(a for a in srv.addresses if isinstance(a, tuple))[:2]
    return await asyncio.open_connection(host, port)


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)


async def test_many_requests_on_one_persistent_connection(server) -> None:  # type: ignore[no-untyped-def]
    srv, backend, _ = server
    reader, writer = await open_tcp(srv)
    for _ in range(50):
        assert await ask(reader, writer, RCPT_REQUEST) == DUNNO
    backend.apply(Decision(0, "127.0.0.65", Action.BAN, "manual"))
    assert await ask(reader, writer, RCPT_REQUEST) == BAN
    writer.close()


async def test_back_to_back_requests_in_one_write_get_one_reply_each(server) -> None:  # type: ignore[no-untyped-def]
    srv, backend, _ = server
    backend.apply(Decision(0, "192.0.2.1", Action.BAN, "manual"))
    reader, writer = await open_tcp(srv)
    writer.write(
        request(protocol_state="CONNECT", client_address="192.0.2.2")
        + request(protocol_state="CONNECT", client_address="192.0.2.1")
        + request(protocol_state="RCPT", client_address="192.0.2.2")[:20]
    )
    await writer.drain()
    assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == DUNNO
    assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == BAN
    # the third request arrives in pieces
    rest = request(protocol_state="RCPT", client_address="192.0.2.2")[20:]
    for i in range(len(rest)):
        writer.write(rest[i : i + 1])
    assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == DUNNO
    writer.close()


async def test_unix_socket_serves_the_captured_requests(server) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    path = next(a for a in srv.addresses if isinstance(a, str))
    assert oct(Path(path).stat().st_mode & 0o777) == "0o660"
    # Look the sample up first: a skip after connecting would leak the socket into a later test.
    sample = shared_file("captured-mailstack/policy_requests.sample.jsonl")
    reader, writer = await asyncio.open_unix_connection(path)
    for line in sample.read_text().splitlines():
        rec = json.loads(line)
        attrs = {k: v for k, v in rec.items() if k not in ("t", "action")}
        assert await ask(reader, writer, request(**attrs)) == DUNNO
    writer.close()


async def test_empty_missing_and_duplicated_attributes_are_tolerated(server) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    reader, writer = await open_tcp(srv)
    raw = (
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\n"
        b"client_address=192.0.2.10\nsasl_username=\nrecipient=\nsize=0\nfuture_attribute=x=y\n\n"
    )
    assert await ask(reader, writer, raw) == DUNNO
    assert await ask(reader, writer, b"request=smtpd_access_policy\n\n") == DUNNO
    writer.close()


@pytest.mark.parametrize(
    "bad",
    [
        b"request=smtpd_access_policy\ngarbage line\n\n",
        b"request=something_else\nclient_address=1.2.3.4\n\n",
        b"request=smtpd_access_policy\nclient_address=" + b"9" * 2000 + b"\n\n",
        b"x" * 3000,  # no end of request in sight: bounded buffer
    ],
)
async def test_malformed_request_is_logged_and_the_connection_closed(
    server,
    bad: bytes,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    srv, _, _ = server
    reader, writer = await open_tcp(srv)
    assert (
        await ask(reader, writer, request(protocol_state="CONNECT", client_address="192.0.2.3"))
        == DUNNO
    )
    with caplog.at_level(logging.WARNING, logger="mailward.policy.postfix"):
        writer.write(bad)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF, no reply
    assert "closing connection" in caplog.text
    assert srv.core.stats.malformed == 1
    writer.close()
    # the server itself is fine
    reader, writer = await open_tcp(srv)
    assert (
        await ask(reader, writer, request(protocol_state="CONNECT", client_address="192.0.2.4"))
        == DUNNO
    )
    writer.close()


async def test_many_requests_in_one_read_are_each_held_to_the_size_limit_alone(server) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    one = request(protocol_state="RCPT", client_address="192.0.2.7")
    count = srv.settings.max_request_bytes // len(one) + 3  # together well over the limit
    reader, writer = await open_tcp(srv)
    writer.write(one * count)
    await writer.drain()
    for _ in range(count):
        assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == DUNNO
    assert srv.core.stats.malformed == 0
    writer.close()


async def test_answers_before_a_malformed_request_in_the_same_write_still_arrive(server) -> None:  # type: ignore[no-untyped-def]
    srv, backend, _ = server
    backend.apply(Decision(0, "192.0.2.9", Action.BAN, "manual"))
    reader, writer = await open_tcp(srv)
    writer.write(
        request(protocol_state="CONNECT", client_address="192.0.2.8")
        + request(protocol_state="CONNECT", client_address="192.0.2.9")
        + b"no equals sign\n\n"
    )
    await writer.drain()
    # Replies go out once per pass of the loop; closing for the bad request must not lose them.
    assert await asyncio.wait_for(reader.read(), 5) == DUNNO + BAN
    assert srv.core.stats.malformed == 1
    writer.close()


async def test_connection_limit_and_disconnect_events_through_the_server(server) -> None:  # type: ignore[no-untyped-def]
    srv, _, clock = server
    reader, writer = await open_tcp(srv)
    connect = request(protocol_state="CONNECT", client_address="192.0.2.77")
    for _ in range(3):
        assert await ask(reader, writer, connect) == DUNNO
    assert await ask(reader, writer, connect) == b"action=421 4.7.0 Error: too many connections\n\n"
    for _ in range(4):
        srv.observe(
            Disconnect(ts=clock.now(), service=Service.SUBMISSION, ip=ip_address("192.0.2.77"))
        )
    assert await ask(reader, writer, connect) == DUNNO
    writer.close()


async def test_a_crash_inside_the_decision_answers_dunno(server) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server

    def broken(*_: object) -> object:
        raise RuntimeError("bug")

    srv.core.backend.standing = broken  # type: ignore[method-assign]
    reader, writer = await open_tcp(srv)
    assert (
        await ask(reader, writer, request(protocol_state="CONNECT", client_address="192.0.2.5"))
        == DUNNO
    )
    assert srv.core.stats.errors == 1
    writer.close()


async def test_started_by_a_daemon_it_subscribes_to_events_and_uses_its_engine() -> None:
    class Daemon:
        def __init__(self) -> None:
            self.engine = MemoryBackend()
            self.clock = ManualClock(0)
            self.callbacks: list[object] = []
            self.decisions: list[Decision] = []

        def on_event(self, cb: object) -> None:
            self.callbacks.append(cb)

        async def submit(self, ds: list[Decision]) -> None:
            self.decisions += ds

    d = Daemon()
    srv = PostfixPolicyServer(
        PostfixPolicySettings(listen=["inet:127.0.0.1:0"], unknown_recipients_per_client=1)
    )
    await srv.start(d)
    try:
        assert d.callbacks == [srv.observe]
        assert srv.core.backend is d.engine
        srv.observe(
            UnknownRecipient(
                ts=0, service=Service.SMTP, ip=ip_address("192.0.2.8"), recipient="x@y"
            )
        )
        await asyncio.sleep(0.01)
        assert [x.rule for x in d.decisions] == ["policy_enumeration_ip"]
    finally:
        await srv.stop()


def _reference_parse(raw: bytes) -> dict[str, str] | str:
    """The plain-split reading of a request, as the protocol describes it; a str names the
    kind of error (which line and message wording may differ)."""
    lines = raw.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) > MAX_LINES:
        return "lines"
    if any("=" not in line for line in lines):
        return "malformed"
    attrs = dict(line.split("=", 1) for line in lines)
    if "" in attrs:
        return "nameless"
    if attrs.get("request") != "smtpd_access_policy":
        return "request"
    return attrs


_LINE = st.one_of(
    st.sampled_from(
        [
            "request=smtpd_access_policy",
            "request=junk",
            "client_address=192.0.2.1",
            "ccert_subject=CN=a=b",
            "sender=",
            "=nameless",
            "no equals sign",
            "",
            "sasl_username=\u00fcser",
        ]
    ),
    st.text(alphabet="ab=\r\xff \t", max_size=6),
)


@given(st.lists(_LINE, max_size=12), st.integers(0, 120))
def test_parse_request_reads_like_a_split_on_the_first_equals(lines: list[str], pad: int) -> None:
    raw = "\n".join(["request=smtpd_access_policy", *lines, *["x=y"] * pad]).encode(
        "utf-8", "surrogateescape"
    )
    expected = _reference_parse(raw)
    if isinstance(expected, dict):
        assert parse_request(raw) == expected
    else:
        with pytest.raises(ProtocolError) as err:
            parse_request(raw)
        wording = {
            "lines": "lines (limit",
            "malformed": "malformed attribute line",
            "nameless": "without a name",
            "request": "unsupported request",
        }
        assert wording[expected] in str(err.value)


_READ_LINE = st.one_of(
    st.builds(
        lambda name, value: name + b"=" + value,
        st.sampled_from([n.encode() for n in READS] + [b"ccert_subject", b"x"]),
        st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")),
    ),
    st.sampled_from([b"request=smtpd_access_policy", b"request=junk", b"=v", b"noequals", b""]),
    st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")),
)


try:
    from mailward.policy import _scan as c_scanner
except ImportError:  # a pure-Python build (no C compiler, or MAILWARD_COMPILE=0)
    c_scanner = None  # type: ignore[assignment]
# the pure-Python reader always; the C scanner where it is built (the compiled test run)
_SCANNERS: list[Any] = [None] if c_scanner is None else [None, c_scanner.scan]


@given(lines=st.lists(_READ_LINE, max_size=14), lead=st.booleans(), pad=st.integers(0, 110))
def test_read_request_takes_what_the_full_parse_would_and_refuses_the_same(
    lines: list[bytes], lead: bool, pad: int
) -> None:
    head = [b"request=smtpd_access_policy"] if lead else []
    raw = b"\n".join([*head, *lines, *[b"x=y"] * pad])
    for impl in _SCANNERS:
        with patch.object(postfix, "_scan", impl):
            try:
                full = parse_request(raw)
            except ProtocolError as exc:
                with pytest.raises(ProtocolError) as err:
                    read_request(raw)
                assert str(err.value) == str(exc)
            else:
                assert read_request(raw) == {k: v for k, v in full.items() if k in READS}
                # where the server finds it: in place, amid other requests in its read buffer
                buf = bytearray(b"x=1\n\n" + raw + b"\n\nrequest=junk")
                assert read_request(buf, MAX_LINES, 5, 5 + len(raw)) == read_request(raw)


def test_the_decision_reads_no_attribute_the_server_does_not_extract() -> None:
    # Read from the source: compiled, ``decide`` reads a dict in C and a spying subclass of
    # dict would see nothing. Every use of ``attrs`` must be ``attrs.get("<name>", ...)`` with a
    # name the server extracts, or ``attrs`` handed on within the module.
    import ast

    source = Path(__file__).parents[2] / "src" / "mailward" / "policy" / "postfix_rules.py"
    tree = ast.parse(source.read_text())
    read: set[str] = set()
    handed_on = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "attrs"
            ):
                assert func.attr == "get", ast.unparse(node)
                assert isinstance(node.args[0], ast.Constant), ast.unparse(node)
                read.add(node.args[0].value)
            elif any(isinstance(a, ast.Name) and a.id == "attrs" for a in node.args):
                assert ast.unparse(func) in ("self.decide", "self._account"), ast.unparse(node)
                handed_on += 1
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            assert node.value.id != "attrs", ast.unparse(node)
    assert handed_on == 2
    assert "client_address" in read and read <= set(READS), read
