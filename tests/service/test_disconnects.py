"""cancel_on_disconnect with a fake request whose client leaves after a while."""

from __future__ import annotations

import asyncio

import pytest

from service.disconnects import ClientDisconnected, cancel_on_disconnect


class FakeRequest:
    def __init__(self, gone_after_checks: int | None) -> None:
        self.gone_after_checks = gone_after_checks
        self.checks = 0

    async def is_disconnected(self) -> bool:
        self.checks += 1
        return self.gone_after_checks is not None and self.checks >= self.gone_after_checks


def test_returns_result_of_finished_work() -> None:
    async def work() -> int:
        await asyncio.sleep(0.05)
        return 7

    request = FakeRequest(gone_after_checks=None)

    assert asyncio.run(cancel_on_disconnect(request, work(), poll_interval_s=0.01)) == 7  # type: ignore[arg-type]
    assert request.checks >= 1


def test_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    async def main() -> None:
        await cancel_on_disconnect(FakeRequest(gone_after_checks=2), work(), poll_interval_s=0.01)  # type: ignore[arg-type]

    with pytest.raises(ClientDisconnected):
        asyncio.run(main())
    assert cancelled.is_set()


def test_work_errors_propagate() -> None:
    async def work() -> int:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(cancel_on_disconnect(FakeRequest(gone_after_checks=None), work(), poll_interval_s=0.01))  # type: ignore[arg-type]
