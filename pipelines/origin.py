"""The code location as workspace.yaml names it: what a run needs to belong to it in the UI.

A run launched from the webserver carries two origins. The remote one (code location, repository, job) is how the UI
files it under the job's Runs tab and the Overview, and how "Re-execute" finds the code to run it again; a run
without it is an orphan there, and re-executing it fails with `CheckError: Expected non-None value: None`. The Python
one (module and attribute) is how a run worker rebuilds the job. `bucket-sync sync` executes in its own process, but
takes both from workspace.yaml's `load_from` entry, read by Dagster's own workspace loader, so its runs are the
webserver's runs in every way but who executed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.remote_origin import (
    CodeLocationOrigin,
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module
from dagster._core.workspace.load import location_origins_from_yaml_paths

#: The workspace file `make ui` and `dagster dev` load: the repository root's, beside this package.
WORKSPACE_YAML = Path(__file__).resolve().parents[1] / "workspace.yaml"
#: What workspace.yaml loads, for an installed copy that ships without it (the same entry, spelled out).
MODULE = "pipelines.definitions"


@dataclass(frozen=True)
class LocatedJob:
    """A job of the code location: the job to execute here, and the origins a run of it records."""

    job: ReconstructableJob
    remote_origin: RemoteJobOrigin


class WorkspaceError(ValueError):
    """workspace.yaml does not load this project's definitions the way the CLI can follow."""


def code_location_origin(workspace: Path = WORKSPACE_YAML) -> ManagedGrpcPythonEnvCodeLocationOrigin:
    """The origin of the code location that loads pipelines.definitions, exactly as the webserver builds it."""
    if not workspace.exists():
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        return ManagedGrpcPythonEnvCodeLocationOrigin(
            loadable_target_origin=LoadableTargetOrigin(module_name=MODULE, working_directory="."),
            location_name=MODULE,
        )
    origins: list[CodeLocationOrigin] = list(location_origins_from_yaml_paths([str(workspace)]))
    for origin in origins:
        if isinstance(origin, ManagedGrpcPythonEnvCodeLocationOrigin):
            target = origin.loadable_target_origin
            if target.module_name == MODULE or target.package_name == MODULE:
                return origin
    names = ", ".join(o.location_name for o in origins) or "none"
    raise WorkspaceError(
        f"{workspace} has no `python_module: {{module_name: {MODULE}}}` entry under load_from (it loads: {names}); "
        f"restore that entry so runs started by bucket-sync belong to the code location the UI shows"
    )


def located_job(job_name: str, workspace: Path = WORKSPACE_YAML) -> LocatedJob:
    """`job_name` of the workspace's code location, rebuilt from the module and attribute the workspace loads."""
    origin = code_location_origin(workspace)
    target = origin.loadable_target_origin
    base = Path(workspace).parent
    working_directory = str((base / target.working_directory).resolve()) if target.working_directory else str(base)
    attribute = target.attribute
    if attribute is None:  # the workspace names the module only: Dagster finds its one Definitions object
        attribute = loadable_targets_from_python_module(MODULE, working_directory)[0].attribute
    repository = ReconstructableRepository.for_module(MODULE, attribute, working_directory)
    repository_name = repository.get_definition().name
    remote = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(code_location_origin=origin, repository_name=repository_name),
        job_name=job_name,
    )
    return LocatedJob(job=repository.get_reconstructable_job(job_name), remote_origin=remote)
