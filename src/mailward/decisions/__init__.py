"""Stage 4, decide: the Decision type and the ledger of active bans and protections."""
