"""Show: aggregate events into the analysis report (terminal, JSON, self-contained HTML)."""
