"""Fetch an image by URL for the `image_url` field, only from allowlisted public hosts.

Server-side fetching lets a client make the service send requests on its
behalf, so it is off unless the `fetch` section enables it with a host
allowlist. When on, every URL, including each redirect target, must:

- use http or https, carry no user name or password, and name an allowlisted
  host;
- resolve only to global addresses. A host with any loopback, private,
  link-local, multicast or reserved address is rejected, and the connection
  goes to the address that was checked, so a second DNS answer cannot swap in
  another one;
- stay within `max_bytes` and `timeout_s` for the whole fetch, and within
  `max_redirects` redirects.

`allow_private_addresses` lifts the address check for tests that serve images
from 127.0.0.1; it is never needed in production.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urljoin

import httpx

from service.config import FetchConfig

logger = logging.getLogger("mllm_classify.url_fetch")

Resolver = Callable[[str, int], list[str]]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_CHARS = 2048


class FetchError(ValueError):
    """Raised for a URL the service will not fetch, or a fetch that failed; the message gives the reason."""


def resolve_host(host: str, port: int) -> list[str]:
    """Return every address `host` resolves to, as strings."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise FetchError(f"cannot resolve host {host!r}: {error}") from error
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def host_allowed(host: str, allowed_hosts: list[str]) -> bool:
    """Return whether `host` matches an allowlist entry: an exact name, or "*.suffix" for its subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def address_problem(address: str) -> str | None:
    """Return why `address` may not be fetched from, or None for a global unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return "non-public"
    return None


class UrlFetcher:
    """Fetch image bytes under a FetchConfig; `fetch` blocks, so call it off the event loop."""

    def __init__(self, config: FetchConfig, resolver: Resolver = resolve_host) -> None:
        self.config = config
        self.resolver = resolver

    def fetch(self, url: str) -> bytes:
        """Return the body of `url`, following allowed redirects, or raise FetchError."""
        if not self.config.enabled:
            raise FetchError("URL fetching is disabled on this service; upload the image as the file field 'image'")
        if len(url) > MAX_URL_CHARS:
            raise FetchError(f"the URL is {len(url)} characters, above the limit of {MAX_URL_CHARS}")

        deadline = time.monotonic() + self.config.timeout_s
        # trust_env=False: proxy variables of the service's environment must not
        # route a fetch around the address checks.
        with httpx.Client(follow_redirects=False, trust_env=False) as client:
            current = url
            for _ in range(self.config.max_redirects + 1):
                location = self._fetch_once(client, current, deadline)
                if isinstance(location, bytes):
                    return location
                current = urljoin(current, location)
        raise FetchError(f"{url} redirects more than {self.config.max_redirects} times")

    def _check_url(self, url: str) -> tuple[httpx.URL, str]:
        """Return the parsed URL and the checked address to connect to."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as error:
            raise FetchError(f"invalid URL {url!r}: {error}") from error
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"URL scheme {parsed.scheme!r} is not allowed; use http or https")
        if parsed.userinfo:
            raise FetchError("URLs with a user name or password are not allowed")
        host = parsed.host
        if not host:
            raise FetchError(f"the URL {url!r} has no host")
        if not host_allowed(host, self.config.allowed_hosts):
            raise FetchError(f"host {host!r} is not in the fetch allowlist")

        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self.resolver(host, port)
        if not addresses:
            raise FetchError(f"host {host!r} has no addresses")
        if not self.config.allow_private_addresses:
            for address in addresses:
                problem = address_problem(address)
                if problem is not None:
                    raise FetchError(f"host {host!r} resolves to the {problem} address {address}, which is not allowed")
        return parsed, addresses[0]

    def _fetch_once(self, client: httpx.Client, url: str, deadline: float) -> bytes | str:
        """Fetch one URL; return the body, or the Location of a redirect."""
        parsed, address = self._check_url(url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"fetching the image did not finish within {self.config.timeout_s:g} s")

        # Connect to the checked address; Host and TLS SNI keep the original name.
        pinned = parsed.copy_with(host=address)
        headers = {"Host": parsed.netloc.decode("ascii"), "Accept": "image/*"}
        request = client.build_request(
            "GET", pinned, headers=headers, timeout=remaining, extensions={"sni_hostname": parsed.host}
        )
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise FetchError(f"fetching {url} timed out after {self.config.timeout_s:g} s") from error
        except httpx.HTTPError as error:
            raise FetchError(f"fetching {url} failed: {error}") from error

        try:
            if response.status_code in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(f"{url} returned HTTP {response.status_code} without a Location header")
                return location
            if response.status_code != 200:
                raise FetchError(f"fetching {url} failed with HTTP {response.status_code}")
            return self._read_body(response, url, deadline)
        finally:
            response.close()

    def _read_body(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        limit = self.config.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"the image at {url} is {declared} bytes, above the limit of {limit} bytes")

        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    raise FetchError(f"the image at {url} is above the limit of {limit} bytes")
                # NOTE: the deadline is checked between chunks, so a server that
                # trickles bytes can hold a fetch for up to twice timeout_s.
                if time.monotonic() > deadline:
                    raise FetchError(f"fetching {url} did not finish within {self.config.timeout_s:g} s")
        except httpx.TimeoutException as error:
            raise FetchError(f"fetching {url} timed out after {self.config.timeout_s:g} s") from error
        except httpx.HTTPError as error:
            raise FetchError(f"fetching {url} failed while reading the body: {error}") from error
        return bytes(body)
