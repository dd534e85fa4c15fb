"""The one retry mechanism of every process: tenacity, with each policy named where it is used.

A `Backoff` says which errors are worth another try, how long to wait between tries and how
many tries there are. Waits are interrupted by a stop event (SIGTERM must not wait out a 10 s
backoff); when it is set the retrying ends with `RetryStopped` instead of another attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

T = TypeVar("T")

log = logging.getLogger(__name__)


class RetryStopped(Exception):
    """The stop event was set while waiting for the next attempt; nothing more was tried."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """A named retry policy: exponential waits from `first_wait` up to `max_wait` seconds."""

    name: str
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # Errors never retried even when they are also instances of `retry_on`.
    never_on: tuple[type[BaseException], ...] = ()
    first_wait: float = 0.5
    max_wait: float = 10.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def retryable(self, exc: BaseException) -> bool:
        """Whether this policy tries again after `exc`."""
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.never_on)

    def retrying(
        self,
        *,
        stop: asyncio.Event | None = None,
        logger: logging.Logger | None = None,
        on_retry: Callable[[BaseException], object] | None = None,
    ) -> AsyncRetrying:
        """A tenacity `AsyncRetrying` of this policy; the last error is re-raised as it was."""

        async def sleep(seconds: float) -> None:
            if stop is None:
                await asyncio.sleep(seconds)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            if stop.is_set():
                raise RetryStopped(self.name)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            assert error is not None
            if on_retry is not None:
                on_retry(error)
            (logger or log).warning(
                "%s failed (%s: %s); attempt %d, retrying in %.2fs",
                self.name,
                type(error).__name__,
                error,
                state.attempt_number,
                state.upcoming_sleep,
            )

        return AsyncRetrying(
            sleep=sleep,
            stop=stop_never if self.max_attempts is None else stop_after_attempt(self.max_attempts),
            # tenacity's exponential wait is multiplier * exp_base ** (attempt - 1).
            wait=wait_exponential(
                multiplier=self.first_wait, exp_base=self.multiplier, max=self.max_wait
            ),
            retry=retry_if_exception(self.retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        stop: asyncio.Event | None = None,
        logger: logging.Logger | None = None,
        on_retry: Callable[[BaseException], object] | None = None,
    ) -> T:
        """Await `fn()` until it succeeds, its error is not retryable or attempts run out."""
        async for attempt in self.retrying(stop=stop, logger=logger, on_retry=on_retry):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
