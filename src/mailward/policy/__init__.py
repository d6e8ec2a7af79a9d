"""In-line decisions: the Postfix policy server and the Dovecot auth-policy server.

``policy_components(settings)`` gives the daemon the components enabled in ``[policy.*]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mailward.config.model import Settings
from mailward.events import IPAddress
from mailward.policy.dovecot import DovecotPolicyServer
from mailward.policy.postfix import PostfixPolicyServer

if TYPE_CHECKING:
    from mailward.notify.metrics import Metrics


def policy_components(
    settings: Settings,
    *,
    country: Callable[[IPAddress], str | None] | None = None,
    metrics: Metrics | None = None,
) -> list[PostfixPolicyServer | DovecotPolicyServer]:
    """The policy servers enabled in the configuration, ready for ``daemon.add_component``.

    ``country`` (e.g. ``GeoLookup.country``) enables the distinct-countries-per-account signal;
    with ``metrics`` each answer's latency is observed into ``mailward_policy_latency_seconds``.
    """
    out: list[PostfixPolicyServer | DovecotPolicyServer] = []
    if settings.policy.postfix.enabled:
        out.append(PostfixPolicyServer(settings.policy.postfix, country=country, metrics=metrics))
    if settings.policy.dovecot.enabled:
        out.append(DovecotPolicyServer(settings.policy.dovecot, metrics=metrics))
    return out


__all__ = ["DovecotPolicyServer", "PostfixPolicyServer", "policy_components"]
