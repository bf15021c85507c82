"""Make LocalStack's gateway listen only where GATEWAY_LISTEN says.

LocalStack 2026.3.0's Twisted server ignores the host part of an IPv4 GATEWAY_LISTEN
address (``TCP4ServerEndpoint(reactor, port)``, marked "TODO: interface = host?"), so
``127.0.0.1:4566`` ends up bound on every interface. MovieRecs binds every server to
loopback, so this replaces that one call with the same endpoint plus ``interface=host``.
"""

from __future__ import annotations

from typing import Any


def bind_gateway_to_configured_host() -> None:
    """Patch ``TwistedRuntimeServer.register`` to pass each listen address's host as interface."""
    from localstack.runtime.server import twisted as ls_twisted

    class _HostAwareEndpoints:
        """Stands in for ``twisted.internet.endpoints`` inside LocalStack's server module only."""

        def __init__(self, real: Any, hosts: list[str]):
            self._real = real
            self._hosts = hosts

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

        def TCP4ServerEndpoint(self, reactor: Any, port: int, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
            host = self._hosts.pop(0) if self._hosts else ""
            kwargs.setdefault("interface", host)
            return self._real.TCP4ServerEndpoint(reactor, port, *args, **kwargs)

    original = ls_twisted.TwistedRuntimeServer.register
    if getattr(original, "_movierecs_loopback", False):
        return

    def register(self: Any, gateway: Any, listen: list, ssl_creds: Any = None) -> None:
        real = ls_twisted.endpoints
        hosts = [hp.host for hp in listen if not ls_twisted.config.is_ipv6_address(hp.host)]
        ls_twisted.endpoints = _HostAwareEndpoints(real, hosts)
        try:
            original(self, gateway, listen, ssl_creds)
        finally:
            ls_twisted.endpoints = real

    register._movierecs_loopback = True  # type: ignore[attr-defined]
    ls_twisted.TwistedRuntimeServer.register = register
