"""The in-person channel: check-in codes, visits, look-ups and the store queue."""
