"""Memory: the long-term store of events and decisions (SQLite by default)."""
