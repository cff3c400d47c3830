"""jobledger: an event-sourced job orchestrator."""
