"""Data-subject rights over the log: erasure (crypto-shredding) and the access export.

Personal data is encrypted per customer before it reaches storage
(:mod:`threadline.store.sealing`). :class:`Erasure` destroys a customer's keys, and those
of every identity that became them, then purges what was derived from their data;
:func:`export_subject` gathers everything the log holds of one customer, and nothing of
anyone else. Both start from :func:`find_subject`.
"""

from threadline.governance.erasure import Erased, Erasure
from threadline.governance.export import export_subject, record_export
from threadline.governance.subjects import Requester, Subject, find_subject

__all__ = [
    "Erased",
    "Erasure",
    "Requester",
    "Subject",
    "export_subject",
    "find_subject",
    "record_export",
]
