"""OpenAPI descriptions of the problem documents a route may answer with."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from threadline.api.problems import MEDIA_TYPE

_MEANING: Final = {
    400: "Malformed request (for example a cursor this service did not issue)",
    401: "No bearer token, or one that is refused",
    403: "The token's principal may not do this",
    404: "No such resource",
    409: "Not allowed in the current state",
    422: "A parameter or body field is invalid or unknown",
}


class ProblemOut(BaseModel):
    """An RFC 9457 problem document; clients match on ``type``."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    instance: str
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer with these problem statuses."""
    schema = ProblemOut.model_json_schema()
    return {
        status: {
            "description": _MEANING.get(status, "Problem"),
            "content": {MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }
