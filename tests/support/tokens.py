"""Keys and JWTs for the auth tests: real PyJWT tokens, plus the forgeries a server must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HS_SECRET = "a-test-secret-that-is-long-enough-for-hs256!"


@dataclass(frozen=True)
class KeyPair:
    private: Any
    public_pem: str


def rsa_keys() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(key, _public_pem(key))


def ec_keys() -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(key, _public_pem(key))


def _public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(*, expires_in: float = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "tester", "iat": now, "exp": now + int(expires_in), **extra}


def sign(payload: dict[str, Any], key: Any, algorithm: str) -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def unsigned(payload: dict[str, Any]) -> str:
    """An `alg: none` token: no signature at all."""
    return _b64(json.dumps({"alg": "none", "typ": "JWT"})) + "." + _b64(json.dumps(payload)) + "."


def hs256_with_public_key(payload: dict[str, Any], public_pem: str) -> str:
    """The key-confusion forgery: HS256 "signed" with the server's public key as HMAC secret.

    PyJWT refuses to make one, so it is built by hand.
    """
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"})) + "." + _b64(json.dumps(payload))
    mac = hmac.new(public_pem.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + _b64(mac)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
