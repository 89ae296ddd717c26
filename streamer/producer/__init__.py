"""Producer SDK: validated events, grouped per partition into batch records."""

from streamer.producer.client import UsageProducer

__all__ = ["UsageProducer"]
