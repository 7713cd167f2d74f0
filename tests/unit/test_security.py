"""Authenticator: API keys and JWTs (PyJWT), refusals with a bearer challenge; auth settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.cli import build_parser, main, settings_from_args
from server.config import Settings
from server.errors import Unauthorized
from server.security import Authenticator, SecurityConfigError
from tests.support import tokens
from tests.support.tokens import HS_SECRET, claims, sign


@pytest.fixture(scope="module")
def rsa() -> tokens.KeyPair:
    return tokens.rsa_keys()


@pytest.fixture(scope="module")
def ec() -> tokens.KeyPair:
    return tokens.ec_keys()


def refusal(auth: Authenticator, header: str | None) -> Unauthorized:
    with pytest.raises(Unauthorized) as err:
        auth.authenticate(header)
    assert err.value.status == 401
    assert err.value.headers()["WWW-Authenticate"].startswith("Bearer")
    return err.value


def test_without_configuration_everyone_is_anonymous() -> None:
    auth = Authenticator()
    assert not auth.enabled
    assert auth.authenticate(None).method == "anonymous"


def test_api_keys() -> None:
    auth = Authenticator(api_keys=["key-one", "key-two"])
    assert auth.authenticate("Bearer key-two").subject == "api-key-2"
    assert auth.authenticate("bearer key-one").method == "api_key"
    missing = refusal(auth, None)
    assert "error=" not in missing.headers()["WWW-Authenticate"]  # RFC 6750: no error without credentials
    assert "invalid_token" in refusal(auth, "Bearer key-three").headers()["WWW-Authenticate"]
    refusal(auth, "Bearer key-one-and-more")
    refusal(auth, "Basic a2V5LW9uZTo=")
    refusal(auth, "Bearer ")
    refusal(auth, "key-one")


def test_hs256_tokens() -> None:
    auth = Authenticator(jwt_secret=HS_SECRET, audience="convoy", issuer="https://issuer.test")
    good = claims(aud="convoy", iss="https://issuer.test")
    principal = auth.authenticate("Bearer " + sign(good, HS_SECRET, "HS256"))
    assert principal.method == "jwt" and principal.subject == "tester"

    assert "expired" in refusal(auth, "Bearer " + sign({**good, "exp": 1}, HS_SECRET, "HS256")).message
    assert "audience" in refusal(auth, "Bearer " + sign({**good, "aud": "other"}, HS_SECRET, "HS256")).message
    assert (
        "issuer"
        in refusal(auth, "Bearer " + sign({**good, "iss": "https://evil"}, HS_SECRET, "HS256")).message
    )
    no_exp = {k: v for k, v in good.items() if k != "exp"}
    assert "'exp'" in refusal(auth, "Bearer " + sign(no_exp, HS_SECRET, "HS256")).message
    no_aud = {k: v for k, v in good.items() if k != "aud"}
    assert "'aud'" in refusal(auth, "Bearer " + sign(no_aud, HS_SECRET, "HS256")).message
    wrong_secret = "another-secret-that-is-long-enough-for-hs256"
    refusal(auth, "Bearer " + sign(good, wrong_secret, "HS256"))
    assert "'none'" in refusal(auth, "Bearer " + tokens.unsigned(good)).message
    refusal(auth, "Bearer not.a.jwt")


def test_expiry_is_enforced_even_without_audience_or_issuer() -> None:
    auth = Authenticator(jwt_secret=HS_SECRET)
    assert auth.authenticate("Bearer " + sign(claims(aud="anyone"), HS_SECRET, "HS256")).method == "jwt"
    refusal(auth, "Bearer " + sign(claims(expires_in=-60), HS_SECRET, "HS256"))
    leeway = Authenticator(jwt_secret=HS_SECRET, leeway_s=120)
    assert leeway.authenticate("Bearer " + sign(claims(expires_in=-60), HS_SECRET, "HS256"))


def test_rs256_public_key(rsa: tokens.KeyPair, ec: tokens.KeyPair) -> None:
    auth = Authenticator(jwt_public_key_pem=rsa.public_pem)
    assert auth.authenticate("Bearer " + sign(claims(), rsa.private, "RS256")).method == "jwt"
    assert (
        "'HS256'" in refusal(auth, "Bearer " + tokens.hs256_with_public_key(claims(), rsa.public_pem)).message
    )
    refusal(auth, "Bearer " + tokens.unsigned(claims()))
    refusal(auth, "Bearer " + sign(claims(), ec.private, "ES256"))
    other = tokens.rsa_keys()
    assert "signature" in refusal(auth, "Bearer " + sign(claims(), other.private, "RS256")).message


def test_es256_public_key_and_keys_together(rsa: tokens.KeyPair, ec: tokens.KeyPair) -> None:
    auth = Authenticator(api_keys=["k"], jwt_public_key_pem=ec.public_pem)
    assert auth.authenticate("Bearer " + sign(claims(), ec.private, "ES256")).method == "jwt"
    assert auth.authenticate("Bearer k").method == "api_key"
    refusal(auth, "Bearer " + sign(claims(), rsa.private, "RS256"))
    assert auth.describe().startswith("1 API key(s) and JWT (ES256")


def test_settings_read_a_key_file_and_refuse_bad_configuration(tmp_path: Path, rsa: tokens.KeyPair) -> None:
    pem_file = tmp_path / "key.pem"
    pem_file.write_text(rsa.public_pem)
    auth = Authenticator.from_settings(Settings(jwt_public_key=str(pem_file)))
    assert auth.authenticate("Bearer " + sign(claims(), rsa.private, "RS256")).method == "jwt"
    with pytest.raises(SecurityConfigError, match="cannot read"):
        Authenticator.from_settings(Settings(jwt_public_key=str(tmp_path / "missing.pem")))
    with pytest.raises(SecurityConfigError, match="not a PEM public key"):
        Authenticator(jwt_public_key_pem="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(SecurityConfigError, match="at least 32 bytes"):
        Authenticator(jwt_secret="short")
    with pytest.raises(SecurityConfigError, match="empty"):
        Authenticator(api_keys=[""])


def test_comma_separated_env_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_API_KEYS", "alpha, beta")
    monkeypatch.setenv("CONVOY_CORS_ALLOW_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["alpha", "beta"]
    assert "alpha" not in repr(settings)
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    args = build_parser().parse_args(["serve", "--api-keys", "gamma,delta", "--api-keys", "epsilon"])
    from_flags = settings_from_args(args)
    assert [k.get_secret_value() for k in from_flags.api_keys] == ["gamma", "delta", "epsilon"]


def test_wildcard_origin_with_credentials_is_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError, match="cannot be combined"):
        Settings(cors_allow_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "serve",
                "--cors-allow-origins",
                "*",
                "--cors-allow-credentials",
                "--api-keys",
                "very-secret-key",
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be combined with cors_allow_credentials" in err
    assert "very-secret-key" not in err  # a settings-wide error must not echo the secrets
