"""The default channel: hand the message to the local ``sendmail`` binary (Postfix ships one).

No credentials are stored anywhere, and it works when the network does not. ``send_sync`` is the
same delivery without asyncio, for the OnFailure hook that runs while the daemon is dead.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mailward.errors import BackendUnavailable
from mailward.notify.model import Message
from mailward.notify.render import to_email


def _argv(path: Path, sender: str, to: Sequence[str]) -> list[str]:
    # -i: a lone "." line is not the end; -f: envelope sender; "--" so no recipient is an option.
    return [str(path), "-i", "-f", sender, "--", *to]


class SendmailNotifier:
    def __init__(
        self, path: Path, *, sender: str, to: Sequence[str], timeout: float = 30.0
    ) -> None:
        self.name = "sendmail"
        self.path = path
        self.sender = sender
        self.to = list(to)
        self.timeout = timeout

    async def send(self, message: Message) -> None:
        data = to_email(message, sender=self.sender, to=self.to).as_bytes()
        try:
            proc = await asyncio.create_subprocess_exec(
                *_argv(self.path, self.sender, self.to),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise BackendUnavailable(f"sendmail: cannot run {self.path}: {exc.strerror}") from exc
        try:
            _, err = await asyncio.wait_for(proc.communicate(data), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BackendUnavailable(f"sendmail: {self.path} took over {self.timeout} s") from None
        if proc.returncode != 0:
            raise BackendUnavailable(
                f"sendmail: {self.path} exited {proc.returncode}: "
                f"{err.decode(errors='replace').strip()[:200]}"
            )


def send_sync(
    message: Message, *, path: Path, sender: str, to: Sequence[str], timeout: float = 30.0
) -> None:
    """Deliver without an event loop (the OnFailure hook). Raises ``BackendUnavailable``."""
    data = to_email(message, sender=sender, to=to).as_bytes()
    try:
        done = subprocess.run(
            _argv(path, sender, to), input=data, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"sendmail: cannot deliver through {path}: {exc}") from exc
    if done.returncode != 0:
        raise BackendUnavailable(
            f"sendmail: {path} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[:200]}"
        )
