"""Enrichment: country and ASN of an address, from offline data or .mmdb files."""
