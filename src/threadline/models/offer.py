"""What a model is offered of the business's tools, and what needs a person first.

The pack declares each tool with a description and its parameters as JSON Schema
(``tools.yaml``); a model is offered exactly those, as :class:`ToolSpec`, and only the
ones an agent's allow-list names. A tool the pack marks ``sensitive`` (it moves money or
changes an account) is offered too, but a call to it waits for a person's approval.
"""

from __future__ import annotations

from collections.abc import Iterable

from threadline.business import Business
from threadline.core.errors import ConfigurationError
from threadline.core.model import ToolCall, ToolSpec


def offered(business: Business, allowed: Iterable[str] | None = None) -> tuple[ToolSpec, ...]:
    """The pack's tools named in ``allowed`` (None: every one), in the pack's order.
    ConfigurationError for a name the pack does not declare."""
    tools = business.pack.tools
    names = list(tools) if allowed is None else list(allowed)
    unknown = sorted(set(names) - set(tools))
    if unknown:
        raise ConfigurationError(f"an agent may call only the pack's tools; unknown: {unknown}")
    chosen = set(names)
    return tuple(ToolSpec(name, spec.description, dict(spec.parameters))
                 for name, spec in tools.items() if name in chosen)  # fmt: skip


def needs_approval(business: Business, call: ToolCall) -> bool:
    """Whether ``call`` may run only once a person approves it (the tool is sensitive)."""
    spec = business.pack.tools.get(call.name)
    return spec is not None and spec.sensitive
