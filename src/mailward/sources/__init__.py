"""Stage 1, ingest: turn files, rotated archives, stdin and journald into (line, Origin) pairs."""
