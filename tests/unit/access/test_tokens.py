"""Token verification (static and JWT) and grants: pure, no sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from candlecast.access.tokens import EVERYTHING, Grant, TokenError, Verifier, load_public_key
from tests.strategies import FAST, dumps, json_scalars, objects

SECRET = "s" * 40
NOW = 1_700_000_000.0
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 60, "symbols": ["AAA", "BBB"]}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs(**extra: Any) -> str:
    return jwt.encode(claims(**extra), SECRET, algorithm="HS256")


def hand_signed_hs256(payload: dict[str, Any], secret: bytes) -> str:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(payload).encode())
    return (signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def refused(verifier: Verifier, token: str | None, now: float = NOW) -> str:
    with pytest.raises(TokenError) as exc:
        verifier.verify(token, now)
    assert "." not in exc.value.detail or token is None or token not in exc.value.detail
    return exc.value.code


HS = Verifier(secret=SECRET, leeway=5)


# -- static tokens and no auth ------------------------------------------------------------------


def test_verifier_grants_everything_when_no_auth_is_configured() -> None:
    """No tokens and no keys: every client, with or without a token, gets everything."""
    open_ = Verifier()
    assert not open_.required
    assert open_.verify(None, NOW) is EVERYTHING
    assert open_.verify("anything", NOW) is EVERYTHING


def test_verifier_static_tokens_grant_everything_and_others_are_refused() -> None:
    """A static token grants every symbol for ever; another string is refused."""
    v = Verifier(tokens=("t0k", "other"))
    assert v.verify("other", NOW) is EVERYTHING
    assert refused(v, "wrong") == "bad_token"
    assert refused(v, None) == "token_required"
    assert refused(v, "") == "token_required"


def test_verifier_accepts_static_tokens_beside_jwt() -> None:
    """Static tokens keep working when JWT verification is on too."""
    v = Verifier(tokens=("t0k",), secret=SECRET)
    assert v.verify("t0k", NOW) is EVERYTHING
    assert v.verify(hs(), NOW).symbols == frozenset({"AAA", "BBB"})


# -- JWT ---------------------------------------------------------------------------------------


def test_hs256_token_yields_its_symbols_subject_and_expiry() -> None:
    """A valid HS256 token: its symbols, its subject, and exp plus the leeway."""
    grant = HS.verify(hs(), NOW)
    assert grant == Grant(frozenset({"AAA", "BBB"}), NOW + 60 + 5, "alice")


def test_star_in_the_symbols_claim_grants_every_symbol() -> None:
    """``"*"`` in the symbols claim: no restriction."""
    assert HS.verify(hs(symbols=["*"]), NOW).symbols is None


def test_expired_token_is_refused_after_the_leeway_only() -> None:
    """exp in the past: accepted within the leeway, refused after it."""
    token = hs(exp=NOW - 3)
    assert HS.verify(token, NOW).expires == NOW + 2
    assert refused(HS, token, NOW + 2) == "token_expired"


def test_not_yet_valid_token_is_refused_until_nbf_minus_leeway() -> None:
    """nbf in the future: refused, then accepted once within the leeway."""
    token = hs(nbf=NOW + 30)
    assert refused(HS, token) == "token_not_yet_valid"
    assert HS.verify(token, NOW + 25).symbols == frozenset({"AAA", "BBB"})


def test_token_signed_with_another_secret_is_refused() -> None:
    """A wrong signature is refused."""
    forged = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    assert refused(HS, forged) == "bad_signature"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"exp": None}, "bad_claims"),
        ({"exp": "soon"}, "bad_claims"),
        ({"exp": True}, "bad_claims"),
        ({"symbols": None}, "bad_claims"),
        ({"symbols": "AAA"}, "bad_claims"),
        ({"symbols": ["A A"]}, "bad_claims"),
        ({"nbf": "later"}, "bad_claims"),
    ],
)
def test_token_with_bad_claims_is_refused(extra: dict[str, Any], code: str) -> None:
    """exp is required; exp/nbf are numbers; symbols is a list of symbols."""
    assert refused(HS, hs(**extra)) == code


def test_audience_and_issuer_are_checked_when_configured() -> None:
    """aud and iss must match when set; a token without them is refused then."""
    v = Verifier(secret=SECRET, audience="candlecast", issuer="https://app.example")
    assert v.verify(hs(aud="candlecast", iss="https://app.example"), NOW).subject == "alice"
    assert refused(v, hs(aud="other", iss="https://app.example")) == "bad_audience"
    assert refused(v, hs(iss="https://app.example")) == "bad_audience"
    assert refused(v, hs(aud="candlecast", iss="https://evil.example")) == "bad_issuer"
    assert refused(v, hs(aud="candlecast")) == "bad_issuer"
    # no audience configured: a token's aud is not a reason to refuse it
    assert HS.verify(hs(aud="whatever"), NOW).subject == "alice"


@pytest.mark.parametrize(("key", "alg"), [(EC_KEY, "ES256"), (RSA_KEY, "RS256")])
def test_public_key_tokens_verify_and_others_are_refused(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: str
) -> None:
    """ES256/RS256 verify with the public key; another key's signature does not."""
    v = Verifier(public_key=load_public_key(pem(key)))
    assert v.verify(jwt.encode(claims(), key, algorithm=alg), NOW).symbols == frozenset({"AAA", "BBB"})
    other = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else OTHER_RSA_KEY
    assert refused(v, jwt.encode(claims(), other, algorithm=alg)) == "bad_signature"


def test_algorithm_confusion_and_none_are_refused() -> None:
    """With only a public key, an HS256 token (signed with that key's PEM) and alg=none are refused."""
    public = pem(EC_KEY)
    v = Verifier(public_key=load_public_key(public))
    confused = hand_signed_hs256(claims(), public)  # PyJWT itself refuses to sign this
    assert refused(v, confused) == "bad_algorithm"
    unsigned = hand_signed_hs256(claims(), b"").replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJhbGciOiJub25lIn0")
    unsigned = unsigned.rsplit(".", 1)[0] + "."  # {"alg":"none"}, no signature
    assert refused(v, unsigned) == "bad_algorithm"
    assert refused(HS, unsigned) == "bad_algorithm"


def test_garbage_and_oversize_tokens_are_refused() -> None:
    """Not a JWT, or far too long: refused without parsing."""
    assert refused(HS, "not.a.jwt") == "bad_token"
    assert refused(HS, "x" * 100_000) == "bad_token"


def test_load_public_key_refuses_what_is_not_a_usable_pem_key() -> None:
    """Not PEM at all: a typed error naming the problem."""
    with pytest.raises(TokenError, match="bad_key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


# -- grants --------------------------------------------------------------------------------------


def test_grant_allows_its_symbols_at_any_interval() -> None:
    """``A@5m`` is allowed when ``A`` is."""
    g = Grant(frozenset({"AAA"}))
    assert g.allows("AAA") and g.allows("AAA@5m")
    assert not g.allows("BBB") and not g.allows("BBB@1h")
    assert g.refused(["AAA", "BBB", "CCC@5m"]) == ("BBB", "CCC@5m")
    assert EVERYTHING.refused(["X"]) == ()


def test_grant_limits_a_query_to_what_it_allows() -> None:
    """All symbols under a restricted grant: the grant's; a list: the allowed part, and the refused."""
    g = Grant(frozenset({"AAA", "BBB"}))
    assert g.limit(None) == (frozenset({"AAA", "BBB"}), ())
    assert g.limit(frozenset({"AAA", "ZZZ"})) == (frozenset({"AAA"}), ("ZZZ",))
    assert EVERYTHING.limit(None) == (None, ())


# -- any input: a grant or TokenError --------------------------------------------------------------


def signed(header: dict[str, Any], payload: bytes) -> str:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(dumps(header)) + b"." + b64(payload)
    return (signing_input + b"." + b64(hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest())).decode()


VERIFIER = Verifier(tokens=("static-token",), secret=SECRET, audience="cc", leeway=5)


@FAST
@given(token=st.none() | st.text(max_size=400) | st.text(alphabet="abcXYZ019-_.=", max_size=400))
def test_verify_any_string_returns_a_grant_or_raises_token_error(token: str | None) -> None:
    try:
        grant = VERIFIER.verify(token, NOW)
    except TokenError as exc:
        assert exc.code
        if token:  # the detail never echoes the token (a short one may be a word of the text)
            assert token not in exc.detail or len(token) < 8
        return
    assert isinstance(grant, Grant)


@FAST
@given(claims=objects, header=st.dictionaries(st.sampled_from(["kid", "typ", "cty", "x"]), json_scalars, max_size=3))
def test_verify_any_signed_claims_returns_a_grant_or_raises_token_error(
    claims: dict[str, Any], header: dict[str, Any]
) -> None:
    token = signed({**header, "alg": "HS256"}, dumps(claims))  # by hand: any header, any payload
    try:
        grant = VERIFIER.verify(token, NOW)
    except TokenError:
        return
    assert isinstance(grant, Grant) and grant.expires is not None


@FAST
@given(
    symbols=st.one_of(st.none(), st.frozensets(st.text(min_size=1, max_size=6), max_size=5)),
    wanted=st.one_of(st.none(), st.frozensets(st.text(min_size=1, max_size=6), max_size=5)),
)
def test_grant_limit_never_lets_a_refused_symbol_through(
    symbols: frozenset[str] | None, wanted: frozenset[str] | None
) -> None:
    grant = Grant(symbols)
    allowed, refused = grant.limit(wanted)
    if allowed is not None:
        assert all(grant.allows(s) for s in allowed)
    assert not any(grant.allows(s) for s in refused)
    if wanted is not None:
        assert allowed is not None and allowed | frozenset(refused) == wanted
