"""Stage 3, detect: pure functions of (state, event, now) that produce Decisions."""
