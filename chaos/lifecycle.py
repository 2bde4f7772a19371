"""``async with`` for the chaos parts that start and close: one definition, not three."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Lifecycle:
    """``async with thing`` starts it and always closes it; ``aclose`` is idempotent."""

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # what started before the failure is closed too
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
