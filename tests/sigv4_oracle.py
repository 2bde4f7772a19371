"""botocore's SigV4 (``SigV4Auth``) for a request signed at a chosen second: the oracle our
signer is held to, and the check a stub server makes as DynamoDB would."""

from __future__ import annotations

from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from replicator.aws.credentials import Key


def botocore_authorization(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    key: Key,
    *,
    region: str,
    stamp: str,
    service: str = "dynamodb",
) -> str:
    """The Authorization botocore computes for a POST of ``body`` to ``url`` at ``stamp``.

    ``headers`` are the ones signed (X-Amz-Date, and X-Amz-Security-Token with a token,
    set here); a ``Host`` among them is signed as given, else botocore derives it from
    ``url``. ``add_auth``'s own steps, with the time given instead of read from the clock.
    """
    # Set here, once: botocore's header map keeps both of two spellings of one name.
    stamped = {
        name: value
        for name, value in headers.items()
        if name.lower() not in ("x-amz-date", "x-amz-security-token")
    }
    stamped["X-Amz-Date"] = stamp
    if key.token:
        stamped["X-Amz-Security-Token"] = key.token
    request = AWSRequest(method="POST", url=url, data=body, headers=stamped)
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(key.id, key.secret, key.token), service, region)
    to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    signature = auth.signature(to_sign, request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    return (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
