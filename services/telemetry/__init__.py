"""OpenTelemetry: traces of each job from enqueue to finish, and metrics (docs/observability.md)."""
