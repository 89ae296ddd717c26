"""streamer: exactly-once usage counters for music licensing, on Kafka, Faust and Redis."""

__version__ = "0.1.0"
