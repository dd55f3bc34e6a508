"""The batch runner: many inputs in, one outcome per input out, as each completes.

One job per module:

- `_inputs`: input discovery (folders walked, one identity per photo, duplicates dropped,
  output names, shards) and `_layout`: the paths checked before any request;
- `_pipeline`: one photo, create -> wait -> download, over the journal's `BatchStore`;
- `_policy`: when a photo is created again (`RecreatePolicy`);
- `_stop`: the errors that stop the whole run (`RunStop`);
- `_run`: the run itself (`BatchRunner`, `run_batch`), an async context manager.
"""

from __future__ import annotations

from ._layout import BatchConfigError, check_argument, check_side_files, prepare_out_dir
from ._outcome import BatchOutcome, BatchStats, Mode, Status, default_max_in_flight
from ._policy import RecreatePolicy
from ._restore import restore_error
from ._run import BatchOutcomes, BatchRunner, count_inputs, run_batch, single_error
from ._shard import Shard
from ._stop import key_refused

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
