"""The local server's counters: the steady arrival rate benchmarks read (no event loop)."""

from __future__ import annotations

from idphoto_async.server._stats import Stats


def test_steady_arrival_rate_leaves_out_the_start_and_the_end() -> None:
    """200 arrivals/s for 10 s, after a slow start and before a slow end: 200/s."""
    stats = Stats("basic")
    times = [i * 0.1 for i in range(50)]  # 10/s for 5 s
    times += [5.0 + i * 0.005 for i in range(2000)]  # 200/s for 10 s
    times += [15.0 + i * 0.1 for i in range(50)]
    for t in times:
        stats.arrival("key", t, "create")
    rate = stats.snapshot({}, 0.0)["steady_arrival_rate"]["create"]
    assert abs(rate - 200.0) < 1.0


def test_steady_arrival_rate_needs_ten_arrivals_and_stays_bounded() -> None:
    stats = Stats("basic")
    for t in range(9):
        stats.arrival("key", float(t), "query")
    assert stats.snapshot({}, 0.0)["steady_arrival_rate"] == {"query": None}
    for t in range(100_000):  # 100/s, then 1000/s: only the last 100 000 are kept
        stats.arrival("key", 10.0 + t / 100, "query")
    start = 10.0 + 100_000 / 100
    for t in range(100_000):
        stats.arrival("key", start + t / 1000, "query")
    assert abs(stats.snapshot({}, 0.0)["steady_arrival_rate"]["query"] - 1000.0) < 1.0
