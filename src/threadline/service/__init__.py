"""The running service: its typed parts (:class:`Service`), built and started in one
place (:func:`running`)."""

from threadline.service.parts import Service
from threadline.service.wiring import running

__all__ = ["Service", "running"]
