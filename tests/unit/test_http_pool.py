"""How the write path's HTTP client reads an answer out of the bytes received so far."""

from __future__ import annotations

import pytest

from replicator.aws.answers import body_until_close, parse_answer
from replicator.aws.classify import classify
from replicator.aws.http_pool import ConnectionDropped, _Connection

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}"


def test_an_answer_framed_by_its_length_is_read_once_complete() -> None:
    assert parse_answer(OK) == (200, b"{}", len(OK), True)
    assert parse_answer(OK[:-1]) is None
    assert parse_answer(OK[:20]) is None


def test_bytes_after_the_answer_are_left_for_the_next_one() -> None:
    status, body, used, _ = parse_answer(OK + b"HTTP/1.1 4") or (0, b"", 0, False)
    assert (status, body, used) == (200, b"{}", len(OK))


def test_a_chunked_answer_is_joined_and_trailers_skipped() -> None:
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    assert parse_answer(answer) == (400, b'{"a":1}', len(answer), True)
    for cut in range(len(answer) - 1):
        assert parse_answer(answer[:cut]) is None


def test_an_interim_answer_is_skipped() -> None:
    assert parse_answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) == (200, b"{}", 25 + len(OK), True)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_a_connection_the_server_closes_is_not_kept(head: bytes) -> None:
    assert parse_answer(head) == (200, b"", len(head), False)


def test_an_answer_without_framing_runs_until_the_connection_closes() -> None:
    answer = b"HTTP/1.1 500 Internal Server Error\r\n\r\n<html>oops</html>"
    assert parse_answer(answer) is None
    assert body_until_close(answer) == (500, b"<html>oops</html>")


def test_an_answer_cut_short_by_the_close_is_not_an_answer() -> None:
    assert body_until_close(OK[:-1]) is None
    assert body_until_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{") is None
    assert body_until_close(b"HTTP/1.1 200 OK\r\nContent-") is None


def test_bytes_that_are_not_http_are_refused() -> None:
    with pytest.raises(ValueError, match="not an HTTP"):
        parse_answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_an_answer_whose_crc32_does_not_match_its_body_is_refused() -> None:
    def answer(crc: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\nx-amz-crc32: %d\r\nContent-Length: 2\r\n\r\n{}" % crc

    assert parse_answer(answer(2745614147)) == (200, b"{}", len(answer(2745614147)), True)
    with pytest.raises(ValueError, match="x-amz-crc32"):
        parse_answer(answer(2745614146))


async def test_a_connection_the_other_end_closed_before_the_send_is_a_fault_to_retry() -> None:
    # A server or proxy that accepts and hangs up at once: the connection is lost between
    # connecting and sending. That is the network's fault, retried, never an AssertionError
    # (which the service would take for its own bug and stop on).
    connection = _Connection()
    connection.connection_lost(None)
    with pytest.raises(ConnectionDropped) as raised:
        await connection.send(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert classify(raised.value).retryable
