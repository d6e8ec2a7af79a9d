"""In-line decisions: the Postfix policy server and the Dovecot auth-policy server."""
