"""Upstream URL parsing and the operator's allowlist (the SSRF guard of /process)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

from server.errors import UrlNotAllowed

ALLOW_SETTING = "CONVOY_REMOTE_ALLOW"


class BadUpstreamUrl(ValueError):
    """A URL that cannot name an upstream (not http(s), no host, dot segments...)."""


def parse_upstream_url(raw: str) -> httpx.URL:
    """Parse and normalise an upstream URL; the result is what is checked *and* what is called.

    httpx lower-cases scheme and host, drops default ports and resolves `.`/`..` segments.
    Encoded dot segments (`%2e%2e`) survive that, and a server may decode them later, so any
    dot segment left in the decoded path is refused rather than guessed about.
    """
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise BadUpstreamUrl(f"{raw!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise BadUpstreamUrl(f"{raw!r} is not an http:// or https:// URL")
    if not url.host:
        raise BadUpstreamUrl(f"{raw!r} names no host")
    if any(seg in (".", "..") for seg in url.path.split("/")):
        raise BadUpstreamUrl(f"{raw!r} contains dot segments")
    return url.copy_with(fragment=None)


@dataclass(frozen=True, slots=True)
class _Prefix:
    scheme: str
    userinfo: bytes
    host: str
    port: int | None
    path: bytes

    def admits(self, url: httpx.URL) -> bool:
        # Compare parsed parts, never raw strings: `http://a:1@evil/` has host `evil`, and
        # `http://a:1` must not admit `http://a:10`.
        if (url.scheme, url.userinfo, url.host, url.port) != (
            self.scheme,
            self.userinfo,
            self.host,
            self.port,
        ):
            return False
        path = url.raw_path.split(b"?", 1)[0]
        if self.path.endswith(b"/"):
            return path.startswith(self.path)
        # `/v1` admits `/v1` and `/v1/...`, not `/v1admin`.
        return path == self.path or path.startswith(self.path + b"/")


class AllowList:
    """URL prefixes the operator lets clients call; empty means every URL is refused."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._raw = list(prefixes)
        self._prefixes = [self._parse_prefix(p) for p in self._raw]

    @staticmethod
    def _parse_prefix(raw: str) -> _Prefix:
        url = parse_upstream_url(raw)
        if url.query or url.fragment:
            raise BadUpstreamUrl(f"allowlist prefix {raw!r} must not have a query or fragment")
        return _Prefix(url.scheme, url.userinfo, url.host, url.port, url.raw_path or b"/")

    def __bool__(self) -> bool:
        return bool(self._prefixes)

    def admits(self, url: httpx.URL) -> bool:
        return any(p.admits(url) for p in self._prefixes)

    def check(self, raw_urls: Sequence[str], *, param: str = "api_urls") -> list[httpx.URL]:
        """The normalised URLs, or UrlNotAllowed (403) naming the first refused one."""
        urls: list[httpx.URL] = []
        for i, raw in enumerate(raw_urls):
            where = f"{param}.{i}"
            try:
                url = parse_upstream_url(raw)
            except BadUpstreamUrl as exc:
                raise UrlNotAllowed(str(exc), param=where) from None
            if not self._prefixes:
                raise UrlNotAllowed(
                    f"no upstream URLs are allowed: the operator has not set {ALLOW_SETTING}",
                    param=where,
                )
            if not self.admits(url):
                raise UrlNotAllowed(f"{raw!r} does not match any prefix in {ALLOW_SETTING}", param=where)
            urls.append(url)
        return urls
