"""Which topics and keys belong to a benchmark run: the harness deletes by this."""

from __future__ import annotations

import pytest

from benchmarks.leftovers import Leftovers, run_id_of

RUN = "bench-peers-batch-0a1b2c3d"


@pytest.mark.parametrize("name", [
    f"{RUN}.uses",                                   # input topics
    f"{RUN}.dlq",
    f"{RUN}-__assignor-__leader",                    # Faust's own topics (app id = run id)
    f"{RUN}-quix-batch",                             # a peer's consumer group
    f"changelog__{RUN}-quix-batch--{RUN}.uses--default",   # the Quix peer's topics
    f"repartition__{RUN}-quix-batch--{RUN}.uses--x",
    "{" + RUN + ":3}:w:60000:track",                 # per-partition state
    "{" + RUN + ":3}",
    f"{RUN}:cat:{{T-1}}",                            # catalog
    f"{RUN}:quix:1m:1764720000000",                  # peer output
])
def test_a_runs_topics_and_keys_are_its_own(name: str) -> None:
    assert run_id_of(name) == RUN


@pytest.mark.parametrize("name", [
    "usage-events", "{test-abc:1}:w", "bench-label", "bench-max", "bench-max-0a1b2c3",
    "bench-max-0a1b2c3dz.uses", "xbench-max-0a1b2c3d.uses", "Bench-max-0a1b2c3d.uses",
    "streamer:cat:{T-1}",
])
def test_names_of_no_run_are_not_claimed(name: str) -> None:
    assert run_id_of(name) is None


def test_runs_with_keys_only_or_topics_only_are_all_listed() -> None:
    found = Leftovers(keys={"bench-max-00000001": 5}, topics={"bench-day-00000002": ["t"]})
    assert found and found.runs == ["bench-day-00000002", "bench-max-00000001"]
    assert "bench-max-00000001 (5 Redis keys, 0 topics)" in found.describe()
    assert not Leftovers()
