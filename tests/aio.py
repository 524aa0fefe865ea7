"""Running coroutines in tests: a fresh uvloop per test, failing on unhandled loop
exceptions and on tasks left running."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import uvloop


def run(main: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Run `main()` on a new uvloop; raise if it leaks tasks or the loop saw an unhandled error."""
    errors: list[dict] = []

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        result = await asyncio.wait_for(main(), timeout)
        await asyncio.sleep(0.01)           # let close callbacks run
        me = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        assert not leaked, f"tasks left running: {leaked}"
        return result

    result = uvloop.run(wrapper())
    assert not errors, f"unhandled loop errors: {errors}"
    return result
