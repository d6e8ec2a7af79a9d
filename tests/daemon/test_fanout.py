import asyncio

from mailward.daemon.fanout import Fanout


async def test_slow_or_failing_subscriber_does_not_block_others() -> None:
    fan: Fanout[int] = Fanout("event", maxsize=2)
    good: list[int] = []
    gate = asyncio.Event()

    async def slow(item: int) -> None:
        await gate.wait()

    def broken(item: int) -> None:
        raise ValueError("sink down")

    fan.subscribe(good.append, "good")
    fan.subscribe(slow, "slow")
    fan.subscribe(broken, "broken")
    fan.start()
    for i in range(5):
        fan.publish(i)
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert good == [0, 1, 2, 3, 4]
    status = {s["name"]: s for s in fan.status()}
    assert status["event:broken"]["failures"] == 5
    assert status["event:slow"]["dropped"] >= 1
    gate.set()
    await fan.drain()
    await fan.stop()


async def test_subscribe_after_start() -> None:
    fan: Fanout[str] = Fanout("decision")
    fan.start()
    got: list[str] = []
    fan.subscribe(got.append)
    fan.publish("x")
    await fan.drain()
    assert got == ["x"]
    await fan.stop()
