"""What a served API accepts from the network beyond credentials: which Host names it
answers (DNS rebinding), which foreign origins a browser may call it from (CORS), and how
large a request body may be (docs/security.md, "Cross-site and exposure").

Pure settings and checks; the middleware that applies them is api/guard.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # --max-body-bytes
MIN_BODY_BYTES = 1024  # below this not even a small task's JSON fits
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"  # --allowed-hosts '*': every Host header is answered
WILDCARD_WARNING = (
    "jobledger: warning: --host {host} with no --allowed-hosts answers any Host header, so a "
    "DNS-rebinding page can reach this server through a browser; list the names clients use "
    "with --allowed-hosts (or '*' to mean it)")


@dataclass(frozen=True)
class ExposureSettings:
    """allowed_hosts: the Host names answered (lower case, no port), or None for every one.
    cors_origins: the origins (scheme://host[:port]) whose pages may call the API from a
    browser; none by default (CORS off). max_body_bytes: the largest request body (413
    beyond). The defaults answer every Host: the CLI sets the list its --host implies."""

    allowed_hosts: frozenset[str] | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.max_body_bytes < MIN_BODY_BYTES:
            raise ValueError(f"--max-body-bytes: give at least {MIN_BODY_BYTES} bytes, got "
                             f"{self.max_body_bytes}")


def is_wildcard(host: str) -> bool:
    """Does binding host listen on every address (0.0.0.0, ::)?"""
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_unspecified
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """The Host names a server bound to bind_host answers when --allowed-hosts is not given:
    the bind address and the local names; None (every name) for a wildcard bind, whose
    names only the operator knows (the CLI warns)."""
    if is_wildcard(bind_host):
        return None
    return frozenset({*LOCAL_NAMES, host_name(bind_host)})


def allowed_hosts_of(given: list[str] | None, bind_host: str) -> frozenset[str] | None:
    """--allowed-hosts as given (None: not given), or the default for bind_host."""
    if not given:
        return default_allowed_hosts(bind_host)
    if ANY_HOST in given:
        return None
    return frozenset(host_name(h) for h in given)


def host_name(host: str) -> str:
    """A host as Host headers compare: lower case, without brackets or a port."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port (an IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


def check_host(text: str) -> str:
    """One --allowed-hosts entry: a name or an address, or '*'; ValueError saying why not."""
    entry = text.strip()
    if entry == ANY_HOST:
        return entry
    if not entry or "/" in entry or " " in entry or entry.startswith("*"):
        raise ValueError(f"{text!r} is not a host name or address (example.com, 10.0.0.5, "
                         "or '*' for every host)")
    return entry


def check_origin(text: str) -> str:
    """One --cors-origin entry, as browsers send Origin: scheme://host[:port], nothing
    more; ValueError saying why not ('*' is refused: an allowlist names its origins)."""
    origin = text.strip().rstrip("/")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin: give scheme://host[:port], such as "
                         "https://app.example.com")
    return origin.lower()
