"""Audit: the hash chain checked (verify, anchor), the log exported and imported, and an
embedded log migrated to Kafka (docs/audit.md)."""
