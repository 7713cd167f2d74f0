"""Auth (API keys, RS256 JWTs) and CORS on a real server, through the official clients too."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from server.app import create_app
from tests.support import tokens
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings
from tests.support.tokens import claims, sign

pytestmark = pytest.mark.integration

API_KEY = "convoy-test-key-0123456789"
AUDIENCE = "convoy"
ISSUER = "https://issuer.test"
ALLOWED_ORIGIN = "https://app.example"

# Every route that computes or describes the model, with a body that would succeed.
PROTECTED: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/predict", {"text": "hello"}),
    ("POST", "/v1/embeddings", {"input": "hello", "model": "all-MiniLM-L6-v2"}),
    ("GET", "/v1/models", None),
    ("POST", "/embed", {"inputs": "hello"}),
    ("POST", "/", {"inputs": "hello"}),
    ("GET", "/info", None),
    ("GET", "/models", None),
]


@pytest.fixture(scope="module")
def rsa() -> tokens.KeyPair:
    return tokens.rsa_keys()


@pytest.fixture(scope="module")
def secured(rsa: tokens.KeyPair) -> Iterator[LiveServer]:
    settings = make_settings(
        max_batch_size=4,
        api_keys=[API_KEY],
        jwt_public_key=rsa.public_pem,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        cors_allow_origins=[ALLOWED_ORIGIN],
        cors_allow_credentials=True,
    )
    with live_server(create_app(settings)) as server:
        yield server


def valid_token(rsa: tokens.KeyPair, **overrides: object) -> str:
    return sign({**claims(aud=AUDIENCE, iss=ISSUER), **overrides}, rsa.private, "RS256")


def call(server: LiveServer, method: str, path: str, body: object, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, server.url + path, json=body, headers=headers)


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    error = r.json()["error"]
    assert error["type"] == "authentication_error" and error["message"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_inference_route_needs_credentials(
    secured: LiveServer, rsa: tokens.KeyPair, method: str, path: str, body: object
) -> None:
    assert_401(call(secured, method, path, body, None))
    assert_401(call(secured, method, path, body, "wrong-key"))
    assert call(secured, method, path, body, API_KEY).status_code == 200
    assert call(secured, method, path, body, valid_token(rsa)).status_code == 200


BAD_TOKENS: dict[str, Callable[[tokens.KeyPair], str]] = {
    "expired": lambda rsa: valid_token(rsa, exp=1),
    "wrong-audience": lambda rsa: valid_token(rsa, aud="someone-else"),
    "wrong-issuer": lambda rsa: valid_token(rsa, iss="https://evil.test"),
    "alg-none": lambda rsa: tokens.unsigned(claims(aud=AUDIENCE, iss=ISSUER)),
    "hs256-against-rs256-key": lambda rsa: tokens.hs256_with_public_key(
        claims(aud=AUDIENCE, iss=ISSUER), rsa.public_pem
    ),
    "another-rsa-key": lambda rsa: sign(claims(aud=AUDIENCE, iss=ISSUER), tokens.rsa_keys().private, "RS256"),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_tokens_are_refused(secured: LiveServer, rsa: tokens.KeyPair, kind: str) -> None:
    token = BAD_TOKENS[kind](rsa)
    assert_401(call(secured, "POST", "/v1/embeddings", {"input": "x", "model": "all-MiniLM-L6-v2"}, token))


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_operational_routes_stay_open(secured: LiveServer, path: str) -> None:
    assert httpx.get(secured.url + path).status_code == 200


def test_openai_client_with_keys_and_tokens(secured: LiveServer, rsa: tokens.KeyPair) -> None:
    for credential in (API_KEY, valid_token(rsa)):
        client = OpenAI(base_url=f"{secured.url}/v1", api_key=credential, max_retries=0)
        resp = client.embeddings.create(input="hello", model="all-MiniLM-L6-v2")
        assert len(resp.data[0].embedding) == 384
    bad = OpenAI(base_url=f"{secured.url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(input="hello", model="all-MiniLM-L6-v2")


@pytest.mark.usefixtures("hf_loopback")
def test_inference_client_with_a_key(secured: LiveServer) -> None:
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    assert InferenceClient(base_url=secured.url, api_key=API_KEY).feature_extraction("hi").shape == (1, 384)
    with pytest.raises(HfHubHTTPError) as err:
        InferenceClient(base_url=secured.url, api_key="wrong-key").feature_extraction("hi")
    assert err.value.response.status_code == 401


def test_cors_preflight_from_an_allowed_origin(secured: LiveServer) -> None:
    r = httpx.options(
        f"{secured.url}/v1/embeddings",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["x-request-id"]

    actual = httpx.post(
        f"{secured.url}/embed",
        json={"inputs": "hello"},
        headers={"Origin": ALLOWED_ORIGIN, "Authorization": f"Bearer {API_KEY}"},
    )
    assert actual.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = actual.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "x-total-time" in exposed


def test_cors_preflight_from_a_refused_origin(secured: LiveServer) -> None:
    r = httpx.options(
        f"{secured.url}/v1/embeddings",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    assert r.json()["error"]["code"] == "cors_refused"
    simple = httpx.get(f"{secured.url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_no_auth_configured_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level("WARNING", logger="convoy.security"),
        live_server(create_app(make_settings(max_batch_size=1))),
    ):
        pass
    warnings = [r for r in caplog.records if r.name == "convoy.security" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no authentication configured" in warnings[0].getMessage()
