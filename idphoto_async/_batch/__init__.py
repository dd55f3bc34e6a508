"""The batch runner: many inputs in, one outcome per input out, as each completes.

One job per module:

- `_inputs`: input discovery (folders walked, one identity per photo, duplicates dropped,
  output names, shards) and `_layout`: the paths checked before any request;
- `_pipeline`: one photo, create -> wait -> download, over the journal's `BatchStore`;
- `_policy`: when a photo is created again (`RecreatePolicy`);
- `_stop`: the errors that stop the whole run (`RunStop`);
- `_plans`: the caller's inputs checked and planned in a worker thread, in order;
- `_run`: the run itself (`BatchRunner`: producer and workers in a task group held by an
  async context manager), `_stream`: the outcomes it yields, `_api`: `run_batch`.
"""

from __future__ import annotations

from ._api import run_batch
from ._layout import BatchConfigError, check_argument, check_side_files, prepare_out_dir
from ._outcome import BatchOutcome, BatchStats, Mode, Status, default_max_in_flight
from ._plans import count_inputs
from ._policy import RecreatePolicy
from ._restore import restore_error
from ._run import BatchRunner
from ._shard import Shard
from ._stop import key_refused
from ._stream import BatchOutcomes, single_error

__all__ = [
    "BatchConfigError",
    "BatchOutcome",
    "BatchOutcomes",
    "BatchRunner",
    "BatchStats",
    "Mode",
    "RecreatePolicy",
    "Shard",
    "Status",
    "check_argument",
    "check_side_files",
    "count_inputs",
    "default_max_in_flight",
    "key_refused",
    "prepare_out_dir",
    "restore_error",
    "run_batch",
    "single_error",
]
