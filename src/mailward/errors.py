"""The few exceptions callers catch. Everything else uses built-in exceptions.

MailwardError
 ├─ ConfigError            names the offending key
 ├─ ProtocolError          malformed policy request or HTTP body
 ├─ InputError             an input path or stream that cannot be read
 └─ BackendUnavailable     Redis, nft, mail relay for notices
"""

from __future__ import annotations


class MailwardError(Exception):
    """Base of mailward's own errors."""


class ConfigError(MailwardError):
    """A configuration value is invalid; the message starts with the dotted key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class ProtocolError(MailwardError):
    """A peer sent a request mailward cannot accept."""


class InputError(MailwardError):
    """An input file, glob or stream cannot be read."""


class BackendUnavailable(MailwardError):
    """An external backend (nft, Redis, PostgreSQL, SMTP relay) is not reachable."""
