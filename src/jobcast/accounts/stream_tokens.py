"""Product-signed stream tokens: a product's backend signs a short-lived JWT for one of its users,
and the browser opens the ws stream with it (`?token=<jwt>`, docs/protocol.md).

In the style of Centrifugo's connection and subscription tokens: claims `sub` (the product's user
id), `exp`, `aud` (JOBCAST_JWT_AUDIENCE) and optionally `iss` (checked when JOBCAST_JWT_ISSUER is
set), `jobs` (the job ids it may watch) and `kinds` (the kinds whose jobs it may watch). Signed
with HS256 and the shared JOBCAST_JWT_SECRET, or with RS256 or ES256 and the private key whose
public half is JOBCAST_JWT_PUBLIC_KEY. PyJWT checks the signature, expiry, audience and issuer
(docs/dependencies.md); the key is chosen by the token's `alg`, and each key verifies only its own
algorithms, so a public key is never taken for an HMAC secret.
"""

from __future__ import annotations

import logging

import jwt
from pydantic import ValidationError

from jobcast.conf import option
from jobcast.events.schema import StreamTokenClaims

logger = logging.getLogger(__name__)

LEEWAY_SECONDS = 5  # clock skew allowed between the product's clock and jobcast's, on exp, nbf and iat
MAX_TOKEN_CHARS = 8192
ASYMMETRIC = ("RS256", "ES256")


def stream_tokens_enabled() -> bool:
    return bool(option("JWT_SECRET") or option("JWT_PUBLIC_KEY"))


def stream_token_verify(raw: str) -> StreamTokenClaims | None:
    """The token's claims when its signature, expiry, audience (and issuer) hold; None otherwise."""
    secret, public_key = option("JWT_SECRET"), option("JWT_PUBLIC_KEY")
    if not raw or len(raw) > MAX_TOKEN_CHARS or not (secret or public_key):
        return None
    try:
        algorithm = jwt.get_unverified_header(raw).get("alg")
        if algorithm == "HS256" and secret:
            key = secret
        elif algorithm in ASYMMETRIC and public_key:
            key = public_key
        else:
            return None
        claims = jwt.decode(
            raw, key, algorithms=[algorithm], audience=option("JWT_AUDIENCE"), issuer=option("JWT_ISSUER") or None,
            leeway=LEEWAY_SECONDS, options={"require": ["sub", "exp", "aud"]},
        )
        return StreamTokenClaims.model_validate(claims)
    except (jwt.PyJWTError, ValidationError, ValueError) as exc:
        logger.info("stream token refused: %s", type(exc).__name__)
        return None
