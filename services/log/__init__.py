"""The log backends behind one protocol: SQLite (embedded) and Kafka."""
