"""How much a secret could be guessed: a conservative estimate of its entropy in bits.

A length rule lets ``aaaa…`` or ``password`` repeated through. The estimate
is the lowest of four readings of the secret's bytes, each of which a
predictable secret fails:

- **distribution**: the Shannon entropy of its byte frequencies, times its
  length (``aaaa…``, a short word repeated);
- **steps**: the same over the differences between neighbouring bytes
  (``abcdef…``, ``0123456789…``, keyboard runs);
- **period**: the distribution reading of its shortest repeating unit
  (``abababab…``, any chunk repeated);
- **compression**: the bits zlib needs for it beyond an empty input
  (repeats that are not exact).

Random secrets score near their true entropy: 43 characters of
``secrets.token_urlsafe(32)`` about 200 bits, 64 of ``openssl rand -hex 32``
about 240. The estimate of a short random sample runs low, so generate 32
random bytes rather than the bare 128 bits.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from typing import Final

MIN_SECRET_BITS: Final = 128
_EMPTY: Final = len(zlib.compress(b"", 9))


def _shannon(symbols: Iterable[int]) -> float:
    """The entropy in bits of ``symbols``, all together (frequency entropy times count)."""
    counts = Counter(symbols)
    total = sum(counts.values())
    return -sum(n * math.log2(n / total) for n in counts.values())


def _period(data: bytes) -> int:
    """The length of the shortest unit ``data`` repeats (its length when it does not)."""
    # Knuth–Morris–Pratt failure function: the longest proper prefix that is also a suffix.
    border = [0] * len(data)
    k = 0
    for i in range(1, len(data)):
        while k and data[i] != data[k]:
            k = border[k - 1]
        if data[i] == data[k]:
            k += 1
        border[i] = k
    return len(data) - border[-1] if data else 0


def estimate_bits(secret: str | bytes) -> float:
    """A conservative estimate of the entropy of ``secret`` in bits (see the module)."""
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(data) < 2:
        return 0.0
    distribution = _shannon(data)
    steps = _shannon((b - a) % 256 for a, b in pairwise(data))
    unit = _period(data)
    period = _shannon(data[:unit]) if unit < len(data) else distribution
    compression = 8.0 * max(0, len(zlib.compress(data, 9)) - _EMPTY)
    return max(0.0, min(distribution, steps, period, compression))


def weakness(secret: str | bytes, minimum: int = MIN_SECRET_BITS) -> str | None:
    """None when ``secret`` carries at least ``minimum`` bits, else why not (no secret in it)."""
    bits = estimate_bits(secret)
    if bits >= minimum:
        return None
    return (
        f"is too predictable: about {bits:.0f} bits of entropy, {minimum} needed;"
        " generate one with: openssl rand -hex 32"
    )
