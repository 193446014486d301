"""`scrubbed_errors`: whatever a compute function raises reaches Dagster's run records without a secret in it.

Dagster serializes a failed step's error with its whole cause and context chain, so the proof is a real run on a real
(temporary) instance, whose storage is then searched byte by byte, with a control run showing that the search finds
the secret when the decorator is absent.
"""

import inspect
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    asset,
    instance_for_test,
    materialize,
)
from dagster._serdes import serialize_value

from resources.secrets import remember, scrubbed_errors


def leaky(secret: str) -> None:
    """Fail the way SDK code does: an error quoting the secret, raised while handling another that quotes it, with a
    third as its cause."""
    try:
        raise ValueError(f"context: token {secret} rejected")
    except ValueError:
        raise OSError(f"File name too long: '{secret}' at http://u:{secret}@host/") from KeyError(f"cause {secret}")


def run_and_scan(compute: Callable[..., Any], secret: str) -> tuple[bool, str]:
    """Materialize `compute` as an asset on a fresh instance; whether `secret` is anywhere in its storage or its
    serialized event log, and the step failure's message."""
    step = asset(name="leaky_asset")(compute)
    with instance_for_test() as instance:
        result = materialize([step], instance=instance, raise_on_error=False)
        assert not result.success
        records = serialize_value(list(instance.all_logs(result.run_id)))
        stored = b"".join(p.read_bytes() for p in Path(instance.root_directory).rglob("*") if p.is_file())
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
        message = failure.event_specific_data.error.message
    forms = {secret, json.dumps(secret)[1:-1]}
    found = any(form in records or form.encode() in stored for form in forms)
    return found, message


def test_failed_asset_run_keeps_no_trace_of_the_secret() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)

    def compute(context: AssetExecutionContext) -> MaterializeResult:
        leaky(secret)
        return MaterializeResult()

    found, message = run_and_scan(scrubbed_errors(compute), secret)
    assert not found, "a remembered secret reached Dagster's storage"
    assert "OSError: File name too long: '***' at http://***@host/" in message


def test_control_without_the_decorator_the_scan_finds_the_secret() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)

    def compute(context: AssetExecutionContext) -> MaterializeResult:
        leaky(secret)
        return MaterializeResult()

    found, _ = run_and_scan(compute, secret)
    assert found, "the scan must be able to see a leak, or the test above proves nothing"


def test_replacement_has_no_cause_and_no_context() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)
    with pytest.raises(Failure) as info:
        scrubbed_errors(lambda: leaky(secret))()
    assert info.value.__cause__ is None and info.value.__context__ is None and info.value.__suppress_context__
    assert secret not in str(info.value.description) and secret not in str(info.value.metadata)


def test_failure_is_reraised_scrubbed_with_its_metadata_and_retry_choice() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)

    def compute() -> None:
        raise Failure(
            description=f"bad {secret}",
            metadata={"detail": MetadataValue.text(secret), "count": 3, "doc": MetadataValue.json({"k": secret})},
            allow_retries=False,
        )

    with pytest.raises(Failure) as info:
        scrubbed_errors(compute)()
    assert info.value.description == "bad ***"
    assert secret not in str(info.value.metadata) and info.value.metadata["count"].value == 3
    assert info.value.allow_retries is False


def test_retry_requested_stays_a_retry_with_a_scrubbed_cause() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)

    def compute() -> None:
        try:
            leaky(secret)
        except OSError as exc:
            raise RetryRequested(max_retries=2, seconds_to_wait=1) from exc

    with pytest.raises(RetryRequested) as info:
        scrubbed_errors(compute)()
    assert info.value.max_retries == 2 and info.value.seconds_to_wait == 1
    cause = info.value.__cause__
    assert isinstance(cause, Failure) and secret not in str(cause.description)
    assert cause.__cause__ is None and cause.__context__ is None


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_pass_untouched(interrupt: type[BaseException]) -> None:
    def compute() -> None:
        raise interrupt()

    with pytest.raises(interrupt):
        scrubbed_errors(compute)()


def test_generator_stays_a_generator_and_its_errors_are_scrubbed() -> None:
    secret = f"REMEMBERED-{uuid.uuid4().hex}"
    remember(secret)

    def checks(context: AssetExecutionContext, limit: int) -> Iterator[int]:
        """A multi-asset check yields its results."""
        yield 1
        leaky(secret)

    wrapped = scrubbed_errors(checks)
    assert inspect.isgeneratorfunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(checks) and wrapped.__doc__ == checks.__doc__
    results = wrapped(None, 1)
    assert next(results) == 1
    with pytest.raises(Failure) as info:
        next(results)
    assert secret not in str(info.value.description)
