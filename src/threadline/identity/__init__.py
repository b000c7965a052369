"""One customer across channels: identifiers, links, merges and look-ups.

Other modules use the one the running service holds (``Service.identity``)::

    found = await identity.resolve("phone", "+1 415 555 0123")
    if found is not None and found.verified: ...
"""

from threadline.identity.directory import IdentityDirectory, IdentityProjection
from threadline.identity.fold import Conflict, Link, Merge, customer_stream
from threadline.identity.identifiers import Identifier, parse
from threadline.identity.service import Identity, LinkOutcome, Resolution

__all__ = [
    "Conflict", "Identifier", "Identity", "IdentityDirectory", "IdentityProjection", "Link",
    "LinkOutcome", "Merge", "Resolution", "customer_stream", "parse",
]  # fmt: skip
