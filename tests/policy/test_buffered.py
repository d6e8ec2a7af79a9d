"""A connection reading through one reused buffer sees every byte, in order, across reads."""

from __future__ import annotations

import asyncio

from mailward.policy.buffered import READ_CHUNK, ReplyBatch, ReusedReadBuffer


class _Collect(ReusedReadBuffer):
    def __init__(self, done: asyncio.Event) -> None:
        super().__init__()
        self.got = bytearray()
        self.reads = 0
        self.done = done

    def data_received(self, data: memoryview) -> None:
        self.got += data  # copied: the view is reused by the next read
        self.reads += 1

    def eof_received(self) -> bool | None:
        self.done.set()
        return None


async def test_every_byte_arrives_in_order_through_the_reused_buffer() -> None:
    done = asyncio.Event()
    conns: list[_Collect] = []

    def factory() -> _Collect:
        conns.append(_Collect(done))
        return conns[-1]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = bytes(range(256)) * (3 * READ_CHUNK // 256 + 7)  # several buffers' worth
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(0, len(payload), 1000):
            writer.write(payload[i : i + 1000])
            await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(done.wait(), 5)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert bytes(conns[0].got) == payload
    assert conns[0].reads >= 3  # no read hands over more than one buffer


def test_each_connection_has_its_own_buffer() -> None:
    done = asyncio.Event()
    a, b = _Collect(done), _Collect(done)
    assert a.get_buffer(-1) is not b.get_buffer(-1)
    assert len(a.get_buffer(65536)) == READ_CHUNK
    a.get_buffer(-1)[:3] = b"abc"
    a.buffer_updated(3)
    assert bytes(a.got) == b"abc"


class _Transport:
    """Records writes; ``is_closing`` as a real transport says it."""

    def __init__(self, log: list[tuple[str, bytes]], name: str) -> None:
        self.log, self.name, self.closing = log, name, False

    def write(self, data: bytes) -> None:
        self.log.append((self.name, data))

    def is_closing(self) -> bool:
        return self.closing


async def test_replies_of_one_pass_are_written_together_in_order_after_it() -> None:
    log: list[tuple[str, bytes]] = []
    a, b, gone = _Transport(log, "a"), _Transport(log, "b"), _Transport(log, "gone")
    batch = ReplyBatch(asyncio.get_running_loop())
    batch.put(a, b"1")  # type: ignore[arg-type]
    batch.put(b, b"2")  # type: ignore[arg-type]
    batch.put(gone, b"lost")  # type: ignore[arg-type]
    batch.put(a, b"3")  # type: ignore[arg-type]
    gone.closing = True  # its peer left before the pass ended: nothing to answer
    assert log == [] and len(batch) == 4  # nothing is sent during the pass
    await asyncio.sleep(0)  # the next pass of the loop
    assert log == [("a", b"1"), ("b", b"2"), ("a", b"3")]
    assert len(batch) == 0


async def test_an_early_flush_sends_everything_and_the_scheduled_one_finds_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    a = _Transport(log, "a")
    batch = ReplyBatch(asyncio.get_running_loop())
    batch.put(a, b"1")  # type: ignore[arg-type]
    batch.flush()  # e.g. before closing a connection with a last reply of its own
    assert log == [("a", b"1")]
    batch.put(a, b"2")  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == [("a", b"1"), ("a", b"2")]  # each reply exactly once


async def test_after_runs_once_the_pass_replies_are_written() -> None:
    log: list[tuple[str, bytes]] = []
    a = _Transport(log, "a")
    batch = ReplyBatch(
        asyncio.get_running_loop(), after=lambda: log.append(("after", bytes(len(log))))
    )
    batch.put(a, b"ack")  # type: ignore[arg-type]
    assert log == []
    await asyncio.sleep(0)
    # the reply first, then the work it promised, in the same pass
    assert log == [("a", b"ack"), ("after", b"\0")]
