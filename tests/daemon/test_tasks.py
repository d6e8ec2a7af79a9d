import asyncio

from mailward.daemon.tasks import Supervisor, live_tasks, spawn


async def test_spawn_names_and_keeps_reference() -> None:
    gate = asyncio.Event()
    task = spawn(gate.wait(), name="waiter")
    assert task.get_name() == "waiter"
    assert "waiter" in live_tasks()
    gate.set()
    await task
    assert "waiter" not in live_tasks()


async def test_supervisor_restarts_crashed_task_and_reports() -> None:
    crashes: list[tuple[str, str]] = []
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"boom {runs}")
        done.set()
        await asyncio.Event().wait()

    async def async_hook(name: str, exc: BaseException) -> None:
        crashes.append((name + "-async", str(exc)))

    sup = Supervisor(on_crash=lambda n, e: crashes.append((n, str(e))), min_backoff=0.01)
    sup.add_crash_hook(async_hook)
    sup.add_crash_hook(lambda n, e: 1 / 0)  # a broken hook does not stop restarts
    sup.supervise("flaky", flaky)
    await asyncio.wait_for(done.wait(), 2)
    await asyncio.sleep(0.01)
    assert ("flaky", "boom 1") in crashes and ("flaky", "boom 2") in crashes
    assert ("flaky-async", "boom 2") in crashes
    [info] = sup.status()
    assert info["restarts"] == 2 and info["state"] == "running"
    assert info["last_error"] == "RuntimeError: boom 2"
    await sup.stop()
    assert sup.status()[0]["state"] == "stopped"


async def test_finished_task_is_not_restarted_unless_asked() -> None:
    count = 0

    async def once() -> None:
        nonlocal count
        count += 1

    sup = Supervisor(min_backoff=0.01)
    await sup.supervise("once", once)
    assert sup.info["once"].state == "finished" and count == 1
    sup.supervise("again", once, restart_on_exit=True)
    await asyncio.sleep(0.1)
    assert count >= 3
    await sup.stop(names=["again"])
    assert sup.info["again"].state == "stopped"


async def test_duplicate_name_refused() -> None:
    sup = Supervisor()
    sup.supervise("x", asyncio.Event().wait)
    try:
        sup.supervise("x", asyncio.Event().wait)
    except ValueError as exc:
        assert "already" in str(exc)
    else:
        raise AssertionError("duplicate accepted")
    finally:
        await sup.stop()
