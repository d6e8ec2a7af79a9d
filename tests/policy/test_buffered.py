"""A connection reading through one reused buffer sees every byte, in order, across reads."""

from __future__ import annotations

import asyncio

from mailward.policy.buffered import READ_CHUNK, ReusedReadBuffer


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
