"""Forward-proxy settings for the HTTP client, without I/O.

Theory of operation. A proxy URL (``http://[user:pass@]host[:port]``) becomes a
``ProxyURL``: where to connect, the ``Proxy-Authorization`` value its credentials
give, and a redacted form for messages (the password never appears in one). Only
``http://`` proxies are supported: a ``socks5://`` or ``https://`` proxy is a
``ValueError`` at once, never a silent direct connection.

``EnvProxies.from_environ(environ)`` reads ``http_proxy``, ``https_proxy`` and
``no_proxy`` as curl and ``urllib.request.getproxies_environment`` do: names are
case-insensitive, and the lower-case variable wins over the upper-case one when
both are set. As in urllib (the "httpoxy" rule), ``HTTP_PROXY`` in upper case is
ignored when ``REQUEST_METHOD`` is set: in a CGI script it comes from the client's
``Proxy:`` request header. A value without a scheme (``proxy:3128``) means
``http://``, as for curl. ``NO_PROXY`` is a comma-separated list of host names
(a name matches itself and its subdomains; a leading dot is ignored), IP
addresses or networks (``10.0.0.0/8``), each with an optional ``:port``; ``*``
bypasses the proxy for every host.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["EnvProxies", "ProxyURL", "bypasses", "parse_proxy_url"]

_DEFAULT_PROXY_PORT = 80


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A parsed ``http://`` proxy URL.

    Attributes:
        host: The proxy's host name or address (no brackets).
        port: Its port (80 when the URL gives none).
        username: The user name from the URL, percent-decoded, or ``None``.
        password: The password from the URL, percent-decoded, or ``None``.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` value (Basic), or ``None`` without credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(pair)

    @property
    def label(self) -> str:
        """``[user@]host:port``: names the proxy in pool keys (never the password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username is not None else ""
        return f"{user}{host}:{self.port}"

    def __str__(self) -> str:
        """The URL with the password masked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            user = f"{self.username}:***@" if self.password is not None else f"{self.username}@"
        return f"http://{user}{host}:{self.port}"


def parse_proxy_url(url: object, *, default_scheme: str | None = None) -> ProxyURL:
    """Parse a proxy URL.

    Args:
        url: ``http://[user:pass@]host[:port]``.
        default_scheme: The scheme assumed when ``url`` has none (``"http"`` for
            environment variables); ``None``: a scheme is required.

    Returns:
        The ``ProxyURL``.

    Raises:
        ValueError: not a string, no scheme (when one is required), a scheme other
            than ``http``, no host, or a bad port.

    Example:
        >>> parse_proxy_url("http://u:p%40ss@proxy.example:3128").password
        'p@ss'
        >>> parse_proxy_url("socks5://p:1")
        Traceback (most recent call last):
        ...
        ValueError: unsupported proxy scheme 'socks5' in 'socks5://p:1' (use an http:// proxy)
    """
    if not isinstance(url, str):
        raise ValueError(f"the proxy URL must be a str, not {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        if default_scheme is None:
            raise ValueError(f"the proxy URL {_masked(text)!r} has no scheme (write http://...)")
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"unsupported proxy scheme {parts.scheme!r} in {_masked(text)!r}"
            " (use an http:// proxy)"
        )
    if not parts.hostname:
        raise ValueError(f"the proxy URL {_masked(text)!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the proxy URL {_masked(text)!r} has an invalid port") from exc
    if port == 0:
        raise ValueError(f"the proxy URL {_masked(text)!r} has an invalid port")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(parts.hostname, port or _DEFAULT_PROXY_PORT, username, password)


def _masked(url: str) -> str:
    """``url`` with anything between ``://`` and ``@`` replaced (no credentials in messages)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``NO_PROXY``'s syntax) sends ``host:port`` direct.

    Example:
        >>> bypasses("api.example.com", 443, "localhost, .example.com")
        True
        >>> bypasses("10.1.2.3", 80, "10.0.0.0/8")
        True
        >>> bypasses("example.org", 80, "example.com:80")
        False
    """
    host = host.lower().strip("[]").rstrip(".")
    address = _address(host)
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            network = _network(entry)  # (None: a host name, which cannot match an address)
            if network is not None and address in network:
                return True
            continue
        name = entry.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or ``None`` when it is a host name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``text`` as an IP address or network, or ``None`` when it is a host name."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _split_entry(entry: str) -> tuple[str, int | None]:
    """``host[:port]`` / ``[v6][:port]`` / ``v6`` / ``net/len`` into ``(host, port)``."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


@dataclass(frozen=True, slots=True)
class EnvProxies:
    """The proxies the environment names, looked up per request URL.

    Attributes:
        http: The proxy for ``http://`` URLs, or ``None``.
        https: The proxy for ``https://`` URLs, or ``None``.
        no_proxy: ``NO_PROXY``'s value (``""`` when unset).
    """

    http: ProxyURL | None = None
    https: ProxyURL | None = None
    no_proxy: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> EnvProxies:
        """Read ``http_proxy``, ``https_proxy`` and ``no_proxy`` from ``environ``.

        Raises:
            ValueError: a variable names an unsupported or malformed proxy (the
                message names the variable).

        Example:
            >>> env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "lower:2"}
            >>> EnvProxies.from_environ(env).https.port
            2
        """
        found: dict[str, tuple[str, str]] = {}
        for name, value in environ.items():  # upper (or mixed) case first ...
            key = name.lower()
            if key.endswith("_proxy") and value and name != key:
                if name == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
                    continue  # httpoxy: a CGI client's Proxy: header
                found[key[:-6]] = (name, value)
        for name, value in environ.items():  # ... then lower case wins
            if name.endswith("_proxy") and value and name == name.lower():
                found[name[:-6]] = (name, value)
        proxies: dict[str, ProxyURL | None] = {"http": None, "https": None}
        for scheme in proxies:
            if scheme in found:
                name, value = found[scheme]
                try:
                    proxies[scheme] = parse_proxy_url(value, default_scheme="http")
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        no_proxy = found.get("no", ("", ""))[1]
        return cls(proxies["http"], proxies["https"], no_proxy)

    def for_url(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy for a request to ``scheme://host:port``, or ``None``: go direct."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or bypasses(host, port, self.no_proxy):
            return None
        return proxy
