"""Producer SDK: validated events, grouped per partition into batch records."""

from streamer.producer.client import MissingTopics, UsageProducer

__all__ = ["MissingTopics", "UsageProducer"]
