"""mailward: defends self-hosted Postfix + Dovecot mail servers and learns from the attackers."""

__version__ = "0.1.0"
