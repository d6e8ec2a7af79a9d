"""Stage 2, parse: turn log lines into typed events (``mailward.events``), then correlate them so
each login attempt is counted once."""
