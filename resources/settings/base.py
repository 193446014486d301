"""What every provider's settings share: strict sub-models and the `open` hook the catalog's union dispatches to.

Settings modules import pydantic and nothing else of weight: the catalog validates every entry with them, and a
provider's SDK is imported only when `open` is called for a connection of that provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    from resources.bucket import Bucket
    from resources.catalog import Connection


class StrictModel(BaseModel):
    """Catalog sub-models refuse unknown fields, so a typo is an error that names the field, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class ProviderSettings(BaseModel):
    """A connection's provider fields (`options`, `auth`, and `bucket` or `root`), validated by the provider's model.

    Subclasses declare `provider` as a literal (the union's tag), `options` and `auth`. The top level ignores the
    entry's other fields, which `Connection` has validated already; `options` and `auth` are strict.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    if TYPE_CHECKING:  # declared by every subclass, each with its own model; `concurrency` is common to all
        options: Any

    @field_validator("auth", mode="before", check_fields=False)
    @classmethod
    def _no_auth_means_default(cls, v: Any) -> Any:
        return {"mode": "default"} if v == {} else v

    def open(self, conn: Connection) -> Bucket:
        """A live connection: imports the provider's SDK and resolves its secrets, at the last moment."""
        raise NotImplementedError


def name_rule(problem: Callable[[str | None], str | None]) -> AfterValidator:
    """A validator from a naming rule that says what is wrong with a name (or None): its words become the error."""

    def check(value: str | None) -> str | None:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value

    return AfterValidator(check)
