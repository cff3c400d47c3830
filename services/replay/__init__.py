"""Rebuild the read models from the log and compare checksums."""
