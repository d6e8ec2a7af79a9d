"""Seeded, realistic demo logs: normal traffic mixed with attack scenarios."""
