"""Windowed counter state: in-memory deltas per partition, flushed atomically to Redis."""
