"""The connection test as a Dagster job, so a person can check a connection from the UI's Launchpad.

It reads the catalog and asks the provider for exactly what a sync needs (list, then read one object), and fails
the run unless the status is AVAILABLE, with the remedy in the failure's description.
"""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, Output, job, op
from pydantic import Field

from resources.catalog_resource import CatalogResource
from resources.providers import test_connection as run_connection_test
from resources.secrets import scrubbed_errors


class ConnectionTestConfig(Config):
    connection: str = Field(description="Name of the catalog connection to test")


@op(name="connection_test", description="List one key and read one byte, as a sync would; writes nothing.")
@scrubbed_errors
def connection_test(context: OpExecutionContext, config: ConnectionTestConfig, catalog: CatalogResource) -> Output[str]:
    outcome = run_connection_test(catalog.connection(config.connection))
    metadata = {
        "connection": MetadataValue.text(outcome.connection),
        "provider": MetadataValue.text(outcome.provider),
        "status": MetadataValue.text(outcome.status.value),
        "detail": MetadataValue.text(outcome.detail),
        "what_to_do": MetadataValue.text(outcome.remedy or "nothing"),
    }
    if not outcome.ok:
        raise Failure(
            description=f"{outcome.status.value}: {outcome.detail}. What to do: {outcome.remedy}", metadata=metadata
        )
    context.log.info(f"{outcome.status.value}: {outcome.detail}")
    return Output(outcome.status.value, metadata=metadata)


@job(name="test_connection", description="Test one catalog connection (set ops.connection_test.config.connection).")
def test_connection_job() -> None:
    connection_test()
