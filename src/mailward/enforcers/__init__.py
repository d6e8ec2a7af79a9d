"""Stage 5, enforce: push decisions to nftables (or log them in dry-run)."""
