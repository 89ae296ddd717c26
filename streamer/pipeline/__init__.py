"""The Faust application: agents, partition lifecycle and the per-record processor."""
