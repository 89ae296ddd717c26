"""Independent checks of the pipeline's results, for tests, fault injection and benchmarks.

* :mod:`streamer.verify.truth`: ``GroundTruth``, the counters the pipeline should hold,
  computed from the events a test sent, with no code shared with the pipeline's own
  attribution (shares are re-parsed here with :mod:`decimal`); ``PartitionedTruth``
  keeps one per input partition, to reconcile large runs a partition at a time.
* :mod:`streamer.verify.redis_counters`: ``read_counters``, every counter a worker wrote
  under a key prefix, merged over the per-partition shards (or of one shard), in the
  same key shapes.
  ``read_territory_counters`` the same for the territory counters.
* :mod:`streamer.verify.ledger_files`: the ledger's Delta tables read directly
  (deltalake + DuckDB): its rows in the truth's shapes, its invariants, snapshots to
  compare two runs.
* :mod:`streamer.verify.ranges`: date-range and ``by=territory`` answers of the query
  API against the truth, and against the sum of their days.
* :mod:`streamer.verify.reconcile`: ``compare`` expected against actual counters.
* :mod:`streamer.verify.kafka_progress`: ``wait_drained`` until Redis has counted every
  record Kafka holds.
* :mod:`streamer.verify.worker_process`: ``WorkerProcess``, a ``streamer worker`` subprocess.

Counter keys (tuples), shared by all of them::

    ("track", window, start_ms, track_id, use)                                   -> uses
    ("holder", window, start_ms, holder_id, right, use, "uses"|"weighted_micro") -> value
    ("genre", window, start_ms, genre, ai_origin, use)                           -> uses
    ("trending", window, start_ms, track_id)                                      -> creates

Territory counters (Redis ``tt`` / ``th`` / ``tg``, the territory windows)::

    ("ttrack", window, start_ms, track_id, country, use)                          -> uses
    ("tholder", window, start_ms, holder_id, right, use, country, measure)       -> value
    ("tgenre", window, start_ms, genre, ai_origin, use, country)                 -> uses

Ledger rows per UTC day (``tracks`` / ``holders`` / ``genres`` tables, summed over
partitions unless read for one)::

    ("tracks", day_start_ms, track_id, country, use)                              -> uses
    ("holders", day_start_ms, holder_id, right, use, country, measure)           -> value
    ("genres", day_start_ms, genre, ai_origin, use, country)                      -> uses
"""

from __future__ import annotations

from streamer.verify.reconcile import Reconciliation, compare
from streamer.verify.truth import GroundTruth, PartitionedTruth

__all__ = ["GroundTruth", "PartitionedTruth", "Reconciliation", "compare"]
