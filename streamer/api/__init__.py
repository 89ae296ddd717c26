"""The HTTP query API served by every worker, reading the counters from Redis."""
