"""The Kafka mode's public names (needs the ``kafka`` extra: aiokafka)."""

from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics

__all__ = ["KafkaConfig", "KafkaLogBackend", "jobledger_topics"]
