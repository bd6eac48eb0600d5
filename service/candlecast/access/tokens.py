"""Access tokens: static tokens and signed JWTs, verified into a :class:`Grant`. Pure.

No clock and no I/O here: :meth:`Verifier.verify` takes ``now`` (epoch seconds) and the keys
are given as values (:func:`load_public_key` turns PEM text into a key; the caller reads the
file). Runs wherever it is called (the event loop, per request); nothing to close.

A JWT is accepted when its signature verifies with an allowed algorithm (HS* with the shared
secret, RS*/ES*/PS*/EdDSA with the public key: never one for the other), its ``exp`` is present
and not past (``nbf`` not ahead), both within ``leeway`` seconds, ``aud``/``iss`` match when
configured, and its ``symbols`` claim is a list of symbols (``"*"`` for all). A static token
grants everything, for ever. Failures raise :class:`TokenError` with a short ``code``.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import AllowedPublicKeys

from ..errors import ClientError
from ..model.rules import MAX_TOKEN_CHARS, is_symbol
from ..model.streams import split_stream

__all__ = [
    "EVERYTHING",
    "KEY_ALGORITHMS",
    "MIN_SECRET_BYTES",
    "SECRET_ALGORITHMS",
    "SYMBOLS_CLAIM",
    "Grant",
    "TokenError",
    "Verifier",
    "load_public_key",
]

#: Algorithms verified with the shared secret, and with the public key.
SECRET_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
KEY_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")
#: Shortest HMAC secret accepted, in bytes (RFC 7518 3.2: at least the hash size).
MIN_SECRET_BYTES: Final = 32
#: The claim naming the symbols a token may receive.
SYMBOLS_CLAIM: Final = "symbols"


class TokenError(ClientError):
    """A refused token. ``code`` is short and fit for an error frame (``token_expired``,
    ``bad_signature``...); ``detail`` says why, and never contains the token."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows. ``symbols`` None: every symbol; ``expires``: epoch seconds
    (leeway included) after which the connection must end, None for never."""

    symbols: frozenset[str] | None = None
    expires: float | None = None
    subject: str | None = None

    def allows(self, symbol: str) -> bool:
        """Whether ``symbol`` may be received: ``A@5m`` is allowed by ``A`` (any interval) or by
        ``A@5m`` itself."""
        return self.symbols is None or symbol in self.symbols or split_stream(symbol)[0] in self.symbols

    def refused(self, symbols: Iterable[str]) -> tuple[str, ...]:
        """The ones of ``symbols`` this grant does not allow, in order."""
        return () if self.symbols is None else tuple(s for s in symbols if not self.allows(s))

    def limit(self, wanted: frozenset[str] | None) -> tuple[frozenset[str] | None, tuple[str, ...]]:
        """A query's subscription under this grant: (what may be subscribed, what was refused).
        "Everything" under a restricted grant is the grant's own symbols."""
        if wanted is None:
            return self.symbols, ()
        refused = self.refused(sorted(wanted))
        return wanted - frozenset(refused), refused


#: The grant of a static token, or of every client when no auth is configured.
EVERYTHING: Final = Grant()


def load_public_key(pem: bytes) -> AllowedPublicKeys:
    """An RSA, EC or EdDSA public key from PEM text; raises :class:`TokenError` (``bad_key``)."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise TokenError("bad_key", f"not a PEM public key ({str(exc)[:80]})") from None
    if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey):
        raise TokenError("bad_key", f"a {type(key).__name__} cannot verify JWTs (RSA, EC or EdDSA keys only)")
    return key


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise TokenError("bad_claims", f"{name} must be a number of epoch seconds")
    return float(value)


def _symbols(claims: dict[str, Any]) -> frozenset[str] | None:
    value = claims.get(SYMBOLS_CLAIM)
    if not isinstance(value, list):
        raise TokenError("bad_claims", f'the {SYMBOLS_CLAIM} claim must be a list of symbols (["*"] for all)')
    if "*" in value:
        return None
    if not all(is_symbol(s) for s in value):
        raise TokenError("bad_claims", f"the {SYMBOLS_CLAIM} claim lists something that is not a symbol")
    return frozenset(value)


class Verifier:
    """Checks offered tokens against static tokens and JWT keys. Immutable after construction."""

    def __init__(
        self,
        *,
        tokens: Collection[str] = (),
        secret: str | None = None,
        public_key: AllowedPublicKeys | None = None,
        algorithms: Collection[str] = (),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
        max_lifetime: float | None = 86_400.0,
    ) -> None:
        self._tokens = tuple(t.encode() for t in tokens)
        self._secret = secret.encode() if secret else None
        self._public_key = public_key
        if not algorithms:
            algorithms = (("HS256",) if secret else ()) + (("RS256", "ES256") if public_key is not None else ())
        secret_algs = [a for a in algorithms if a in SECRET_ALGORITHMS and self._secret is not None]
        key_algs = [a for a in algorithms if a in KEY_ALGORITHMS and public_key is not None]
        self._algorithms = frozenset(secret_algs + key_algs)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._max_lifetime = max_lifetime

    @property
    def required(self) -> bool:
        """Whether clients must present a token at all."""
        return bool(self._tokens or self._algorithms)

    def verify(self, token: str | None, now: float) -> Grant:
        """The grant of ``token`` at ``now`` (epoch seconds). Raises :class:`TokenError`."""
        if not self.required:
            return EVERYTHING
        if not token:
            raise TokenError("token_required", "an access token is required")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("bad_token", "the access token is too long")
        raw = token.encode("utf-8", "surrogatepass")
        if any(hmac.compare_digest(raw, t) for t in self._tokens):
            return EVERYTHING
        if not self._algorithms:
            raise TokenError("bad_token", "the access token was refused")
        return self._verify_jwt(token, now)

    def _verify_jwt(self, token: str, now: float) -> Grant:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("bad_token", "the access token was refused (not a known token, nor a JWT)") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("bad_algorithm", f"the token's algorithm {str(alg)[:16]!r} is not accepted")
        key: AllowedPublicKeys | bytes | None = self._secret if alg in SECRET_ALGORITHMS else self._public_key
        assert key is not None  # _algorithms only holds algorithms whose key is configured
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "verify_exp": False,  # checked below, against the ``now`` we were given
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature", "the token's signature does not verify") from None
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
            claim = getattr(exc, "claim", "aud")
            if claim == "iss":
                raise TokenError("bad_issuer", "the token has no issuer (iss)") from None
            raise TokenError("bad_audience", "the token is not for this audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("bad_issuer", "the token is not from the expected issuer (iss)") from None
        except jwt.PyJWTError as exc:
            raise TokenError("bad_token", f"the token was refused ({type(exc).__name__})") from None
        except (ValueError, TypeError):  # a key that cannot verify this algorithm
            raise TokenError("bad_token", "the token was refused") from None
        exp = _number(claims, "exp")
        nbf = _number(claims, "nbf")
        if exp is None:
            raise TokenError("bad_claims", "the token has no expiry (exp)")
        if now >= exp + self._leeway:
            raise TokenError("token_expired", "the token has expired")
        if self._max_lifetime is not None:
            iat = _number(claims, "iat")
            lifetime = max(exp - now, exp - iat if iat is not None else 0.0)
            if not lifetime <= self._max_lifetime + self._leeway:  # an infinite exp too
                raise TokenError(
                    "token_lifetime", f"the token lives longer than this server allows ({self._max_lifetime:g} s)"
                )
        if nbf is not None and now < nbf - self._leeway:
            raise TokenError("token_not_yet_valid", "the token is not valid yet (nbf)")
        sub = claims.get("sub")
        return Grant(_symbols(claims), exp + self._leeway, sub if isinstance(sub, str) else None)
