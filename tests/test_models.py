"""Task states, result parsing (fuzzed) and the error classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import idphoto_async as ia
from idphoto_async._errors import status_error

SEED_STATES = {-17, -16, -15, -14, -13, -11, -10, -9, -8, -7, -5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6}


def test_every_seed_state_is_named_with_its_meaning() -> None:
    assert {int(s) for s in ia.TaskState} == SEED_STATES
    for state in ia.TaskState:
        assert state.description and not state.description.startswith("Unknown")
    assert ia.TaskState(-7).description.startswith("Invalid image file")
    assert ia.TaskState(-8).description.startswith("Processing timed out")


@pytest.mark.parametrize("code", sorted(SEED_STATES))
def test_predicates_follow_the_sign_rule(code: int) -> None:
    state = ia.TaskState(code)
    assert state.is_done == (code == 1)
    assert state.is_failed == (code < 0)
    assert state.is_processing == (code == 0 or code > 1)
    assert sum([state.is_done, state.is_failed, state.is_processing]) == 1


def test_retryable_states_are_service_side_failures_only() -> None:
    retryable = {s for s in SEED_STATES if ia.TaskState(s).retryable}
    assert retryable == {-15, -13, -11, -9, -8, -2, -1}


@given(st.integers(min_value=-1000, max_value=1000))
def test_unknown_states_still_follow_the_sign_rule(code: int) -> None:
    state = ia.TaskState(code)
    assert int(state) == code
    assert state.is_failed == (code < 0)
    assert state.is_done == (code == 1)


def test_task_state_rejects_non_integers() -> None:
    with pytest.raises(ValueError, match="not a valid TaskState"):
        ia.TaskState("1")  # type: ignore[arg-type]


def test_result_parses_the_seed_example() -> None:
    result = ia.TaskResult.from_api(
        {
            "task_id": "TASK_ID",
            "state": 1,
            "progress": 100,
            "image": "https://x.test/id-photo.jpg",
            "completed_at": "1700000000",
        }
    )
    assert result.is_done and result.is_url and not result.is_failed
    assert result.completed_at == datetime.fromtimestamp(1700000000, tz=UTC)
    assert result.expires_at == result.completed_at + timedelta(hours=1)


def test_result_timestamp_forms() -> None:
    result = ia.TaskResult.from_api(
        {
            "task_id": "T",
            "state": "4",
            "progress": "40",
            "created_at": 1700000000123,
            "processed_at": "2023-11-14T22:13:21",
            "completed_at": None,
        }
    )
    assert result.state == ia.TaskState.PROCESSING and result.progress == 40
    assert result.created_at is not None and result.created_at.year == 2023
    assert result.processed_at is not None and result.processed_at.tzinfo is not None
    assert result.completed_at is None


def test_base64_image_kind_and_short_repr() -> None:
    result = ia.TaskResult.from_api({"task_id": "T", "state": 1, "image": "A" * 10_000})
    assert result.image_kind == "base64" and not result.is_url
    assert len(repr(result)) < 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["task_id", "state", "progress", "image", "created_at", "processed_at", "completed_at"]
        ),
        json_values,
    )
)
def test_result_parser_never_fails_untyped(data: dict[str, Any]) -> None:
    try:
        result = ia.TaskResult.from_api(data)
    except ia.MalformedResponseError as exc:
        assert "Unexpected response" in str(exc)
    else:
        assert isinstance(result.state, ia.TaskState)
        assert 0 <= result.progress <= 100


@given(json_values)
def test_result_parser_on_any_json(data: Any) -> None:
    with pytest.raises(ia.MalformedResponseError):
        ia.TaskResult.from_api(data if not isinstance(data, dict) else {"x": data})


def test_task_from_api() -> None:
    task = ia.Task.from_api({"task_id": "abc"})
    assert task.task_id == "abc" and task.created_at is not None
    with pytest.raises(ia.MalformedResponseError):
        ia.Task.from_api({"task_id": ""})


@pytest.mark.parametrize(
    ("code", "cls", "retryable"),
    [
        (400, ia.BadRequestError, False),
        (401, ia.AuthenticationError, False),
        (404, ia.NotFoundError, False),
        (413, ia.PayloadTooLargeError, False),
        (429, ia.RateLimitError, True),
        (500, ia.ServerError, True),
        (502, ia.ServerError, True),
        (418, ia.APIStatusError, False),
    ],
)
def test_status_errors(code: int, cls: type[ia.APIStatusError], retryable: bool) -> None:
    error = status_error(code, "msg", retry_after=1.5)
    assert type(error) is cls
    assert error.status_code == code and error.retryable is retryable
    assert str(error).startswith(f"HTTP {code}: msg.")
    assert error.retry_after == 1.5
    assert isinstance(error, ia.APIError) and isinstance(error, ia.IDPhotoError)


def test_other_errors_say_what_to_do() -> None:
    failed = ia.TaskFailedError("T1", ia.TaskState(-14), "no face found")
    assert "T1" in str(failed) and "-14" in str(failed) and "no face found" in str(failed)
    assert "fix the input" in str(failed)
    assert "get(task_id)" in str(ia.TaskTimeoutError("T", 210.0))
    assert "create the task again" in str(ia.ResultExpiredError("T"))
    assert "Retry-After" in str(ia.LimiterTimeoutError(1.0, retry_after=2.0))
    assert "retried" in str(ia.DownloadError("cut."))
    assert "retried" in str(ia.APITimeoutError())
    assert ia.ValidationError("x", field="size").field == "size"
    assert isinstance(ia.ValidationError("x"), ValueError)
