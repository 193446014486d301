"""Which executor runs the steps of a sync: chosen by the deployment through `BUCKET_SYNC_EXECUTOR`, never in code.

`in_process` (the default) runs every step of a run in the run's own process: one import of the cloud SDKs per sync,
which is what keeps a UI-launched sync as fast as `bucket-sync sync` on one machine. A deployment that wants steps
spread out picks `multiprocess` (one process per step), `celery` (dagster-celery workers) or `k8s` (one pod per step,
dagster-k8s). The last two import their integration only when chosen; install them with the `deploy` extra.
Per-step executors work because every step hands its state to the next through the state store (assets/snapshots.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

VARIABLE = "BUCKET_SYNC_EXECUTOR"
DEFAULT = "in_process"


class ExecutorChoiceError(ValueError):
    """BUCKET_SYNC_EXECUTOR names no executor we know, or one whose integration is not installed."""


def _integration(module: str, attribute: str, extra: str) -> ExecutorDefinition:
    import importlib

    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        raise ExecutorChoiceError(
            f"{VARIABLE}={extra} needs the {module} package, which is not installed ({exc}); install the "
            f"`deploy` extra (uv sync --extra deploy, or pip install 'bucket-sync[deploy]') or unset {VARIABLE} "
            f"to run each sync in one process"
        ) from exc


CHOICES: dict[str, Callable[[], ExecutorDefinition]] = {
    "in_process": lambda: in_process_executor,
    "multiprocess": lambda: multiprocess_executor,
    "celery": lambda: _integration("dagster_celery", "celery_executor", "celery"),
    "k8s": lambda: _integration("dagster_k8s", "k8s_job_executor", "k8s"),
}


def chosen_executor(value: str | None = None) -> ExecutorDefinition:
    """The executor that `value` (default: the `BUCKET_SYNC_EXECUTOR` variable, else in_process) names."""
    raw = os.environ.get(VARIABLE, "") if value is None else value
    name = raw.strip().lower().replace("-", "_") or DEFAULT
    if name not in CHOICES:
        raise ExecutorChoiceError(
            f"{VARIABLE}={raw!r} is not an executor bucket-sync knows; use one of: {', '.join(CHOICES)} "
            f"(unset means {DEFAULT})"
        )
    return CHOICES[name]()
