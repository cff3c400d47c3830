"""The log's history: the read models as of any past moment (as_of), their snapshots, and
retention of finished tasks' rows (docs/audit.md)."""
