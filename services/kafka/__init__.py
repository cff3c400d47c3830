"""Kafka mode's hosts: partition ownership, worker liveness, projection consumers."""
