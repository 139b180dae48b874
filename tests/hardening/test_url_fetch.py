"""URL fetching: off by default, allowlisted hosts only, no loopback or private addresses, bounded.

Every request goes to a server these tests start on 127.0.0.1. Hosts such as
`first.test` exist only in the fake resolvers below, so nothing resolves or
connects outside this machine.
"""

from __future__ import annotations

import pytest

from service import url_fetch
from service.config import FetchConfig
from service.url_fetch import FetchError, UrlFetcher, address_problem, host_allowed
from tests.hardening.local_http import local_http_server, png_bytes


def loopback_resolver(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def fetcher(**overrides) -> UrlFetcher:
    values = {"enabled": True, "allowed_hosts": ["localhost"], "timeout_s": 5.0}
    values.update(overrides)
    return UrlFetcher(FetchConfig(**values))


@pytest.fixture(scope="module")
def server():
    with local_http_server() as (port, requests):
        yield port, requests


def test_fetch_disabled_by_default(server) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="URL fetching is disabled"):
        UrlFetcher(FetchConfig()).fetch(f"http://localhost:{port}/image.png")


def test_fetch_rejects_host_outside_allowlist(server) -> None:
    port, requests = server
    before = len(requests)
    with pytest.raises(FetchError, match="'127.0.0.1' is not in the fetch allowlist"):
        fetcher().fetch(f"http://127.0.0.1:{port}/image.png")
    assert len(requests) == before


def test_fetch_rejects_allowlisted_loopback(server) -> None:
    port, requests = server
    before = len(requests)
    # The real resolver: "localhost" comes from /etc/hosts.
    with pytest.raises(FetchError, match="resolves to the loopback address"):
        fetcher().fetch(f"http://localhost:{port}/image.png")
    assert len(requests) == before


def test_fetch_rejects_allowlisted_loopback_literal(server) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="loopback address 127.0.0.1"):
        fetcher(allowed_hosts=["127.0.0.1"]).fetch(f"http://127.0.0.1:{port}/image.png")


def test_fetch_with_test_override_returns_image(server) -> None:
    port, _ = server
    data = UrlFetcher(
        FetchConfig(enabled=True, allowed_hosts=["localhost"], allow_private_addresses=True), resolver=loopback_resolver
    ).fetch(f"http://localhost:{port}/image.png")
    assert data == png_bytes()


def test_fetch_rejects_redirect_outside_allowlist(server) -> None:
    port, _ = server
    target = f"http://127.0.0.1:{port}/image.png"
    with pytest.raises(FetchError, match="'127.0.0.1' is not in the fetch allowlist"):
        fetcher(allow_private_addresses=True).fetch(f"http://localhost:{port}/redirect?to={target}")


def test_fetch_checks_addresses_after_redirect(server, monkeypatch) -> None:
    port, requests = server
    addresses = {"first.test": ["127.0.0.1"], "second.test": ["10.0.0.5"]}

    # Only the first hop may reach the local server: 127.0.0.1 counts as public
    # here, every other address keeps the real check.
    real_problem = url_fetch.address_problem
    monkeypatch.setattr(url_fetch, "address_problem", lambda address: None if address == "127.0.0.1" else real_problem(address))

    instance = UrlFetcher(
        FetchConfig(enabled=True, allowed_hosts=["first.test", "second.test"]),
        resolver=lambda host, port: addresses[host],
    )
    before = len(requests)
    with pytest.raises(FetchError, match="'second.test' resolves to the private address 10.0.0.5"):
        instance.fetch(f"http://first.test:{port}/redirect?to=http://second.test:{port}/image.png")
    assert requests[before:] == [f"/redirect?to=http://second.test:{port}/image.png"]


def test_fetch_rejects_host_with_any_private_address() -> None:
    instance = UrlFetcher(
        FetchConfig(enabled=True, allowed_hosts=["mixed.test"]), resolver=lambda host, port: ["93.184.216.34", "192.168.1.7"]
    )
    with pytest.raises(FetchError, match="private address 192.168.1.7"):
        instance.fetch("http://mixed.test/image.png")


def test_fetch_limits_redirects(server) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="redirects more than 2 times"):
        fetcher(allow_private_addresses=True, max_redirects=2).fetch(f"http://localhost:{port}/loop")


@pytest.mark.parametrize("path", ["big", "big-chunked"])
def test_fetch_limits_body_size(server, path: str) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="above the limit of 4096 bytes"):
        fetcher(allow_private_addresses=True, max_bytes=4096).fetch(f"http://localhost:{port}/{path}?bytes=50000")


def test_fetch_times_out(server) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="timed out"):
        fetcher(allow_private_addresses=True, timeout_s=0.3).fetch(f"http://localhost:{port}/slow?seconds=2")


def test_fetch_reports_http_errors(server) -> None:
    port, _ = server
    with pytest.raises(FetchError, match="failed with HTTP 404"):
        fetcher(allow_private_addresses=True).fetch(f"http://localhost:{port}/missing.png")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://localhost/image.png", "scheme 'ftp' is not allowed"),
        ("http://user:secret@localhost/image.png", "user name or password"),
        ("http:///image.png", "no host"),
        ("http://localhost/" + "a" * 3000, "above the limit of 2048"),
    ],
)
def test_fetch_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        fetcher().fetch(url)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("0.0.0.0", "private"),
        ("224.0.0.1", "non-public"),
        ("100.64.0.1", "non-public"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_problem_classifies(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_host_allowlist_wildcards() -> None:
    allowed = ["images.example.com", "*.cdn.example.com"]
    assert host_allowed("images.example.com", allowed)
    assert host_allowed("IMAGES.example.com.", allowed)
    assert host_allowed("a.cdn.example.com", allowed)
    assert not host_allowed("cdn.example.com", allowed)
    assert not host_allowed("evil-images.example.com", allowed)
    assert not host_allowed("images.example.com.evil.test", allowed)
