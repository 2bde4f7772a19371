"""AWS Signature Version 4 for the JSON POSTs of DynamoDB, its Streams and Kinesis, with the
per-day work cached.

A general-purpose signer (aiodynamo's, measured) derives the signing key (four HMACs) and
formats the date five times for every request; at thousands of writes a second that was a
large share of the client's CPU per write (bench 8). Here the key is derived once per day and region
and the timestamp once per second; a request costs two SHA-256 digests and one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from replicator.aws.credentials import Key

CONTENT_TYPE = "application/x-amz-json-1.0"  # DynamoDB and DynamoDB Streams
KINESIS_CONTENT_TYPE = "application/x-amz-json-1.1"
ALGORITHM = "AWS4-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host;x-amz-date;x-amz-target"
TOKEN_SIGNED_HEADERS = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"


def canonical_path(path: str) -> str:
    """The path as SigV4 signs it, as botocore normalises it: dot segments and empty
    segments removed, then percent-encoded (``/`` and ``~`` kept)."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    trailing = "/" if path.endswith("/") and kept else ""
    return quote("/" + "/".join(kept) + trailing, safe="/~")


class Signer:
    """Signs POSTs to one host and path, for one signing region and service name.

    ``host`` is the Host header exactly as sent (``http_pool`` gives it); ``path`` the
    request's path as sent.
    """

    def __init__(
        self,
        host: str,
        region: str,
        *,
        path: str = "/",
        service: str = "dynamodb",
        content_type: str = CONTENT_TYPE,
    ) -> None:
        self._host = host
        self._content_type = content_type
        self._region = region
        self._service = service
        self._path = canonical_path(path)
        self._second = -1
        self._stamp = ""
        self._date = ""
        self._keys: dict[tuple[str, str], bytes] = {}

    def headers(self, key: Key, target: str, body: bytes, *, now: float) -> dict[str, str]:
        """The headers that sign ``body`` for ``X-Amz-Target: target`` at ``now`` (unix time)."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._date = self._stamp[:8]
        stamp, date = self._stamp, self._date
        # Signed headers in name order; a session token is signed too, as botocore does.
        token = f"x-amz-security-token:{key.token}\n" if key.token else ""
        signed = TOKEN_SIGNED_HEADERS if key.token else SIGNED_HEADERS
        canonical = (
            f"POST\n{self._path}\n\ncontent-type:{self._content_type}\nhost:{self._host}\n"
            f"x-amz-date:{stamp}\n{token}x-amz-target:{target}\n\n{signed}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(
            self._key(key.secret, date), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": self._content_type,
            "X-Amz-Date": stamp,
            "X-Amz-Target": target,
            "Authorization": (
                f"{ALGORITHM} Credential={key.id}/{scope}, "
                f"SignedHeaders={signed}, Signature={signature}"
            ),
        }
        if key.token:
            headers["X-Amz-Security-Token"] = key.token
        return headers

    def _key(self, secret: str, date: str) -> bytes:
        cached = self._keys.get((secret, date))
        if cached is None:
            cached = ("AWS4" + secret).encode()
            for part in (date, self._region, self._service, "aws4_request"):
                cached = hmac.new(cached, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, date): cached}  # yesterday's and rotated secrets go
        return cached
