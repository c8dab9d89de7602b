"""Which receiver URLs are allowed: http(s) only, https only in production, and no address a
server should not reach on a customer's behalf (loopback, private, link-local such as the cloud
metadata service, shared, reserved, multicast) unless ``WEBHOOK_ALLOW_PRIVATE`` is true.

A name is checked by resolving it when the URL is given (``check``); the address actually
connected to is checked again at every delivery (``webhooks.http``), since DNS may answer
differently later (rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from core.settings import Settings
from services.errors import invalid

MAX_URL = 2048


class UnsafeUrl(ValueError):
    """A URL ZensCall will not send to; the message says why."""


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """An IP address a delivery may connect to."""
    if allow_private:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check(url: str, *, allow_private: bool, production: bool, resolve: bool = True) -> str:
    """The URL if it may receive webhooks, else UnsafeUrl."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise UnsafeUrl(f"must be a URL of 1 to {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("must be an http or https URL")
    if parts.scheme == "http" and production and not allow_private:
        raise UnsafeUrl("must be an https URL")
    if not parts.hostname:
        raise UnsafeUrl("must name a host")
    if parts.username or parts.password:
        raise UnsafeUrl("must not contain credentials")
    if resolve and not allow_private:
        try:
            infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise UnsafeUrl("names a host that does not resolve") from None
        for info in infos:
            if not address_allowed(str(info[4][0]), allow_private=False):
                raise UnsafeUrl("resolves to a private, loopback, link-local or reserved address")
    return url


def checked(url: str, settings: Settings, field: str = "url") -> str:
    """``url`` as ``check`` returns it under ``settings``, or a 422 ``INVALID_WEBHOOK_URL`` refusal
    naming ``field`` (an endpoint's ``url``, a call's or campaign's ``status_callback``)."""
    try:
        return check(url, allow_private=settings.webhook_allow_private, production=settings.is_production)
    except UnsafeUrl as exc:
        raise invalid(field, f"The URL {exc}.", code="INVALID_WEBHOOK_URL") from None
