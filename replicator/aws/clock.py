"""The time requests are signed at: the host's clock, corrected by DynamoDB's own.

DynamoDB refuses a request signed more than 5 minutes away from its clock
(``InvalidSignatureException``, "Signature expired" or "Signature not yet current"), and
every request of a host whose clock is off would be refused the same way: a crash loop.
botocore does not correct for it (it only estimates the skew for its retry header); the
Java and JavaScript SDKs do, from the refusal's ``Date`` header, and so do we: the
offset is kept for the process, the refused request is signed again and sent at once,
and the skew is logged once, not per request.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Less than this between our clock and the server's does not explain a refusal: DynamoDB
# allows 5 minutes, and the Date header counts whole seconds.
TOLERANCE_SECONDS = 60.0


class ServerClock:
    """The host's clock plus ``offset``, the skew measured from DynamoDB's answers."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.offset = 0.0
        self._clock = clock

    def now(self) -> float:
        return self._clock() + self.offset

    def corrected(self, date: str | None, signed_offset: float) -> bool:
        """Whether the ``Date`` of a refusal as expired shows the skew that explains it.

        ``signed_offset`` is the offset the refused request was signed with; when it
        shows skew, the offset is set from ``date`` (unless a concurrent refusal
        already did) and the request should be signed again.
        """
        server = _unix_time(date)
        if server is None:
            return False
        # The Date counts whole seconds: the server's clock is on average half one past it.
        skew = server + 0.5 - self._clock()
        if abs(skew - signed_offset) < TOLERANCE_SECONDS:
            return False  # the request was signed at the server's time: not skew
        if abs(skew - self.offset) >= TOLERANCE_SECONDS:
            self.offset = skew
            log.warning(
                "this host's clock is %.0f s %s DynamoDB's (its answer's Date header): "
                "requests are now signed at DynamoDB's time; set the host's clock (NTP)",
                abs(skew),
                "behind" if skew > 0 else "ahead of",
            )
        return True


def _unix_time(date: str | None) -> float | None:
    if not date:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()
