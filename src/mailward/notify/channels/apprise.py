"""Any service apprise supports (ntfy, Slack, Matrix, Telegram, JSON webhooks, ...).

URLs carry tokens, so they come from the config as secrets and are never logged.
"""

from __future__ import annotations

from collections.abc import Sequence

import apprise

from mailward.errors import BackendUnavailable, ConfigError
from mailward.notify.model import Message, Severity

_TYPES = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.HIGH: apprise.NotifyType.FAILURE,
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
}


class AppriseNotifier:
    def __init__(self, urls: Sequence[str], *, timeout: float = 30.0) -> None:
        self.name = "apprise"
        self.timeout = timeout
        self._apprise = apprise.Apprise()
        for i, url in enumerate(urls):
            if not self._apprise.add(url):
                raise ConfigError(f"notify.apprise_urls[{i}]", "apprise does not accept this URL")

    async def send(self, message: Message) -> None:
        result = await self._apprise.async_notify(
            body=message.text,
            title=message.subject,
            notify_type=_TYPES[message.severity],
            timeout=self.timeout,
        )
        if not result:
            raise BackendUnavailable(f"apprise: {len(self._apprise)} service(s) did not accept it")
