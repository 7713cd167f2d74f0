"""Bearer authentication, pure: API keys and JWTs (verified by PyJWT) -> a Principal, or Unauthorized.

No FastAPI here: server/api/deps.py turns `Authenticator.authenticate` into the dependency that
guards the routes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from server.config import Settings
from server.errors import Unauthorized

log = logging.getLogger("convoy.security")

# Algorithms accepted per kind of configured key. The key decides the algorithm family, never the
# token: a token saying "none", or HS256 against a public key, is refused before any verification.
_PUBLIC_KEY_ALGORITHMS: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
    (rsa.RSAPublicKey, ("RS256", "RS384", "RS512")),
    (ec.EllipticCurvePublicKey, ("ES256", "ES384", "ES512")),
    (ed25519.Ed25519PublicKey, ("EdDSA",)),
    (ed448.Ed448PublicKey, ("EdDSA",)),
)


_MIN_HS256_SECRET_BYTES = 32


class SecurityConfigError(ValueError):
    """The auth settings cannot be used as given; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request: `anonymous` when no auth is configured."""

    subject: str
    method: Literal["anonymous", "api_key", "jwt"]
    claims: Mapping[str, Any] = field(default_factory=dict)


ANONYMOUS = Principal(subject="anonymous", method="anonymous")


class Authenticator:
    """Checks `Authorization: Bearer <credential>` against API keys and/or JWT keys.

    Pure and thread-safe (no mutable state after construction); built once per app.
    """

    def __init__(
        self,
        *,
        api_keys: Sequence[str] = (),
        jwt_secret: str | None = None,
        jwt_public_key_pem: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 0.0,
    ) -> None:
        if any(not k for k in api_keys):
            raise SecurityConfigError("api_keys: an API key may not be empty")
        if jwt_secret is not None and len(jwt_secret.encode("utf-8")) < _MIN_HS256_SECRET_BYTES:
            # RFC 7518 3.2: an HS256 key must be at least as long as the hash (256 bits).
            raise SecurityConfigError(
                f"jwt_secret must be at least {_MIN_HS256_SECRET_BYTES} bytes long for HS256"
            )
        # Digests have one length, so comparing them tells nothing about the keys' lengths.
        self._key_digests = [_digest(k) for k in api_keys]
        self._jwt_keys: dict[str, Any] = {}
        if jwt_secret:
            self._jwt_keys["HS256"] = jwt_secret
        if jwt_public_key_pem:
            key = _load_public_key(jwt_public_key_pem)
            for key_type, algorithms in _PUBLIC_KEY_ALGORITHMS:
                if isinstance(key, key_type):
                    self._jwt_keys.update(dict.fromkeys(algorithms, key))
                    break
            else:
                raise SecurityConfigError(f"jwt_public_key: unsupported key type {type(key).__name__}")
        self._audience = audience
        self._issuer = issuer
        self._leeway_s = leeway_s
        required = ["exp"]  # expiry is always enforced: a token without one is refused
        required += ["aud"] if audience else []
        required += ["iss"] if issuer else []
        # Without a configured audience, a token's `aud` claim is not checked (PyJWT would refuse it).
        self._options: Any = {"require": required, "verify_aud": audience is not None}

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        pem = settings.jwt_public_key
        if pem and "-----BEGIN" not in pem:
            try:
                pem = Path(pem).expanduser().read_text()
            except OSError as exc:
                raise SecurityConfigError(f"jwt_public_key: cannot read {pem!r}: {exc.strerror}") from exc
        return cls(
            api_keys=[k.get_secret_value() for k in settings.api_keys],
            jwt_secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            jwt_public_key_pem=pem,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway_s=settings.jwt_leeway_s,
        )

    @property
    def enabled(self) -> bool:
        return bool(self._key_digests or self._jwt_keys)

    def describe(self) -> str:
        parts = []
        if self._key_digests:
            parts.append(f"{len(self._key_digests)} API key(s)")
        if self._jwt_keys:
            parts.append("JWT (" + ", ".join(sorted(self._jwt_keys)) + ")")
        return " and ".join(parts) if parts else "none"

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller for an Authorization header value; raises `Unauthorized`."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise Unauthorized(
                "missing credentials: send 'Authorization: Bearer <API key or token>'",
                challenge_error=None,  # RFC 6750: no error code when no credentials were sent
            )
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized(
                "malformed Authorization header: expected 'Bearer <API key or token>'",
                challenge_error="invalid_request",
            )
        if self._key_digests:
            principal = self._match_key(credential)
            if principal is not None:
                return principal
        if self._jwt_keys and credential.count(".") == 2:
            return self._verify_jwt(credential)
        raise Unauthorized("invalid API key or token")

    def _match_key(self, credential: str) -> Principal | None:
        given = _digest(credential)
        matched = -1
        for i, digest in enumerate(self._key_digests):
            # No early exit: the time taken does not say which key (if any) matched.
            if hmac.compare_digest(digest, given):
                matched = i
        return Principal(subject=f"api-key-{matched + 1}", method="api_key") if matched >= 0 else None

    def _verify_jwt(self, token: str) -> Principal:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token: not a well-formed JWT") from None
        if not isinstance(algorithm, str) or algorithm not in self._jwt_keys:
            accepted = ", ".join(sorted(self._jwt_keys))
            raise Unauthorized(f"invalid token: algorithm {algorithm!r} not accepted (accepted: {accepted})")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._jwt_keys[algorithm],
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("invalid token: expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("invalid token: audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("invalid token: issuer not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"invalid token: missing the {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("invalid token: not valid yet") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token: bad signature or malformed") from None
        subject = claims.get("sub")
        return Principal(subject=str(subject) if subject is not None else "jwt", method="jwt", claims=claims)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _load_public_key(pem: str) -> Any:
    try:
        return load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise SecurityConfigError(f"jwt_public_key: not a PEM public key ({exc})") from None


def log_auth_mode(auth: Authenticator, settings: Settings) -> None:
    if auth.enabled:
        log.info("authentication: %s", auth.describe())
    else:
        log.warning(
            "no authentication configured: every route is open to anyone who can reach %s:%d; "
            "set CONVOY_API_KEYS or CONVOY_JWT_SECRET / CONVOY_JWT_PUBLIC_KEY before exposing it",
            settings.host,
            settings.port,
        )
