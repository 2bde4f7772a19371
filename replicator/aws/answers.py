"""Reading an HTTP/1.1 answer out of the bytes a connection received.

Framed by Content-Length or chunked, or (rarely) by the connection closing. Like botocore,
an answer whose ``x-amz-crc32`` does not match its body is refused (``ValueError``): the
pool takes it for a transport fault and the retry policy sends the request again.
"""

from __future__ import annotations

import zlib

HEAD_END = b"\r\n\r\n"


class Answer(tuple[int, bytes]):
    """(status, body) of an answer, and the ``date`` header of a refusal: the signer's
    clock is corrected from it (``aws.clock``). A tuple, like ``os.stat_result``, so
    callers that unpack (status, body) read it as before."""

    date: str | None = None


def parse_answer(buffer: bytes | bytearray) -> tuple[int, bytes, int, bool] | None:
    """The first complete answer in ``buffer``: (status, body, bytes used, keep-alive).

    None while it is incomplete, and for an answer framed by neither Content-Length nor
    chunked encoding (its body ends when the server closes: see ``body_until_close``).
    Raises ``ValueError`` for bytes that are not an HTTP/1.x answer.
    """
    start = 0
    while True:
        end = buffer.find(HEAD_END, start)
        if end < 0:
            return None
        status, fields, version = _head(bytes(buffer[start:end]))
        body_start = end + len(HEAD_END)
        if not 100 <= status < 200:
            break
        start = body_start  # an interim answer (100 Continue): the real one follows
    keep_alive = fields.get("connection", "").lower() != "close" and version != "HTTP/1.0"
    if "chunked" in fields.get("transfer-encoding", "").lower():
        chunked = _chunked(buffer, body_start)
        if chunked is None:
            return None
        body, used = chunked
        return status, _checked(body, fields), used, keep_alive
    if "content-length" not in fields:
        return None
    length = int(fields["content-length"])
    if len(buffer) < body_start + length:
        return None
    body = _checked(bytes(buffer[body_start : body_start + length]), fields)
    return status, body, body_start + length, keep_alive


def body_until_close(buffer: bytes | bytearray) -> tuple[int, bytes] | None:
    """(status, body) of an answer whose body ran until the connection closed; None when
    the answer is cut short (its head incomplete, or fewer bytes than its framing says)."""
    end = buffer.find(HEAD_END)
    if end < 0:
        return None
    status, fields, _ = _head(bytes(buffer[:end]))
    if "content-length" in fields or "transfer-encoding" in fields:
        return None  # framed, so ``parse_answer`` would have had it whole
    return status, _checked(bytes(buffer[end + len(HEAD_END) :]), fields)


def _checked(body: bytes, fields: dict[str, str]) -> bytes:
    """``body``, if it matches the ``x-amz-crc32`` DynamoDB sends with every answer."""
    expected = fields.get("x-amz-crc32")
    if expected is not None and zlib.crc32(body) != int(expected):
        raise ValueError(f"the body does not match its x-amz-crc32 ({expected})")
    return body


def refusal_date(buffer: bytes | bytearray) -> str | None:
    """The Date header of the answer at the start of ``buffer``."""
    end = buffer.find(HEAD_END)
    return _head(bytes(buffer[:end]))[1].get("date") if end >= 0 else None


def _head(head: bytes) -> tuple[int, dict[str, str], str]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(code), fields, version


def _chunked(buffer: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailers_end = buffer.find(b"\r\n", position)
            while trailers_end > position:  # skip trailer fields up to the empty line
                position = trailers_end + 2
                trailers_end = buffer.find(b"\r\n", position)
            if trailers_end < 0:
                return None
            return bytes(body), trailers_end + 2
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2
