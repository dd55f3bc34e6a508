"""``--shard K/N``: one batch split over N processes, every input done exactly once.

The split is by input identity (a stable hash of the real path or URL), so it is the same in
every process, run and machine; names are claimed over all inputs, so every shard names
every output the same way. The three-process test runs on a real redis-server sharing the
key's QPS, against one local server with that QPS limit.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _batch_helpers import make_images
from _server_support import lower_priority
from redis_server import running_redis_server

from idphoto_async import BatchConfigError, Shard
from idphoto_async._batch._inputs import OTHER_SHARD, InputPlanner, PlannedInput
from idphoto_async._batch._layout import real
from idphoto_async.testing import LocalServerProcess

KEY = "shard-test-key"


def test_every_identity_belongs_to_exactly_one_shard() -> None:
    shards = [Shard(k, 5) for k in range(1, 6)]
    counts = [0] * 5
    for n in range(5000):
        owners = [i for i, s in enumerate(shards) if s.owns(f"/photos/p{n:05d}.jpg")]
        assert len(owners) == 1
        counts[owners[0]] += 1
    assert min(counts) > 850  # an even split (1000 each, give or take)
    assert Shard(2, 5).owns("/photos/a.jpg") == Shard.parse(" 2 / 5 ").owns("/photos/a.jpg")


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x", "1-3", ""])
def test_a_bad_shard_is_a_config_error(text: str) -> None:
    with pytest.raises(BatchConfigError):
        Shard.parse(text)


def test_shards_name_outputs_alike_and_split_the_inputs(tmp_path: Path) -> None:
    """Clashing names get the same hashed name in every shard (named over all inputs)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = []
    for n in range(30):
        for folder in ("a", "b"):
            path = tmp_path / folder / f"x{n}.jpg"
            path.write_bytes(b"x")
            inputs.append(str(path))
    out = real(tmp_path / "out")
    seen: dict[str, str] = {}
    for k in (1, 2, 3):
        planner = InputPlanner(out, {}, shard=Shard(k, 3))
        for raw in inputs:
            for plan in planner.plan(raw):
                if isinstance(plan, PlannedInput):
                    assert plan.relative not in seen.values()
                    seen[plan.name] = plan.relative
                else:
                    assert plan is OTHER_SHARD
    assert sorted(seen) == sorted(inputs)  # each input in exactly one shard
    assert len(set(seen.values())) == len(inputs)
    whole = InputPlanner(out, {})
    alone = {p.name: p.relative for raw in inputs for p in whole.plan(raw)}  # type: ignore[union-attr]
    assert alone == seen


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis_server() as url:
        yield url


@pytest.mark.exclusive
def test_three_shards_on_redis_do_every_input_once_within_the_qps(
    tmp_path: Path, redis_url: str
) -> None:
    count = 24
    make_images(tmp_path / "in", count, subdirs=3)
    out = tmp_path / "out"
    with LocalServerProcess(qps=4, count_refused=True, processing_time="fixed:0.05") as server:
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "idphoto_async.cli",
                    "batch",
                    str(tmp_path / "in"),
                    "-o",
                    str(out),
                    "--shard",
                    f"{k}/3",
                    "--base-url",
                    server.base_url,
                    "--qps",
                    "4",
                    "--redis-url",
                    redis_url,
                    "--no-progress",
                ],
                env={"PATH": "/usr/bin:/bin", "IDPHOTO_API_KEY": KEY},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=lower_priority,
            )
            for k in (1, 2, 3)
        ]
        results = [proc.communicate(timeout=180) for proc in procs]
        elapsed = time.monotonic() - started
        stats = server.stats()
    taken = 0
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        match = re.match(r"(\d+) inputs?:", stdout)
        assert match, stdout
        taken += int(match[1])
        assert "left to other shards" in stdout
    assert taken == count  # the shares add up to the whole, without overlap
    assert stats["creates"] == count  # every input created once, across the shards
    peak = stats["peak_requests_per_second"]
    print(f"3 shards: {elapsed:.1f} s, {stats['requests']}, 429s {stats['responses_429']}")
    print(f"peak {peak} requests/s")
    assert stats["rate_limited"] == 0 and stats["responses_429"] == 0
    assert stats["peak_requests_per_second"] <= 4
    outputs = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(outputs) == count
    journals = sorted(p.name for p in out.iterdir() if p.name.startswith(".idphoto-journal"))
    assert len([j for j in journals if "shard" in j and not j.endswith(("-wal", "-shm"))]) == 3
