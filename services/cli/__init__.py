"""The jobledger command."""
