"""The SSRF guard: URL normalisation and prefix matching of CONVOY_REMOTE_ALLOW."""

from __future__ import annotations

import pytest

from server.errors import UrlNotAllowed
from server.remote.allowlist import AllowList, BadUpstreamUrl, parse_upstream_url


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("http://a:1/", "http://a:1/x"),
        ("http://a:1", "http://a:1/anything"),
        ("http://a:1/v1", "http://a:1/v1"),
        ("http://a:1/v1", "http://a:1/v1/embeddings"),
        ("http://a:1/v1/", "http://a:1/v1/x?q=1"),
        ("HTTP://A.Example:1/", "http://a.example:1/x"),  # scheme and host are case-insensitive
        ("http://a/", "http://a:80/x"),  # the default port is the same port
        ("https://a/", "https://a:443/x"),
        ("http://a:1/v1/", "http://a:1/v2/../v1/x"),  # dot segments resolved before matching
    ],
)
def test_admits(prefix: str, url: str) -> None:
    allow = AllowList([prefix])
    assert allow.check([url]) == [parse_upstream_url(url)]


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("http://a:1/", "http://a:1@evil/"),  # userinfo: the host is `evil`
        ("http://a:1/", "http://a:1@evil:1/x"),
        ("http://a:1", "http://a:10/x"),  # a string prefix, but another port
        ("http://a:1/", "https://a:1/x"),  # another scheme
        ("http://a:1/", "http://a.evil:1/x"),
        ("http://a/", "http://a:8080/x"),
        ("http://a:1/v1", "http://a:1/v1admin"),  # not a path-segment boundary
        ("http://a:1/v1/", "http://a:1/v1/../admin"),  # resolves outside the prefix
        ("http://a:1/v1/", "http://a:1/v1/%2e%2e/admin"),  # encoded dot segment
        ("http://a:1/v1/", "http://a:1/v1/..%2fadmin"),
        ("http://a:1/", "http://user@a:1/x"),
    ],
)
def test_refuses(prefix: str, url: str) -> None:
    with pytest.raises(UrlNotAllowed) as info:
        AllowList([prefix]).check([url])
    assert info.value.status == 403


def test_an_empty_allowlist_refuses_everything_and_names_the_setting() -> None:
    with pytest.raises(UrlNotAllowed, match="CONVOY_REMOTE_ALLOW") as info:
        AllowList([]).check(["http://127.0.0.1:1/x"])
    assert info.value.param == "api_urls.0"


def test_the_refused_url_is_named_by_position() -> None:
    with pytest.raises(UrlNotAllowed) as info:
        AllowList(["http://a/"]).check(["http://a/x", "http://b/x"])
    assert info.value.param == "api_urls.1"


@pytest.mark.parametrize(
    "raw", ["ftp://a/x", "not a url", "http:///x", "file:///etc/passwd", "http://a/./x/%2e"]
)
def test_unusable_urls(raw: str) -> None:
    with pytest.raises(BadUpstreamUrl):
        parse_upstream_url(raw)


def test_prefixes_with_a_query_are_refused() -> None:
    with pytest.raises(BadUpstreamUrl):
        AllowList(["http://a/x?y=1"])
