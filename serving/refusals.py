"""A client's error met in a replica, carried back to the ingress, which answers it with its 4xx."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

# The replica's own Serve log (logs/serve/replica_*.log), where a request's refusal belongs.
_replica_log = logging.getLogger("ray.serve")


class ChangeRefused(ValueError):
    """A change to a collection's documents (an upload, a removal, a reindex) that is not acceptable; ``status`` is the
    HTTP status it deserves."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(LookupError):
    """No such document or job (or one the caller may not see)."""


@dataclass
class Refused:
    """What a Collections method returns in place of raising a client's error (the ingress raises it again, with
    ``raise_refused``): Serve logs every exception a replica raises at ERROR with its traceback, and a refused upload
    is no fault of the service's."""

    error: ChangeRefused | NotFound


def refusals_returned(method):
    @functools.wraps(method)
    async def answered(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except (ChangeRefused, NotFound) as err:
            _replica_log.info("refused %s: %s", method.__name__, err)
            return Refused(err)

    return answered


def raise_refused(result):
    """A Collections method's result, or its refusal raised here, where the client's 4xx is made."""
    if isinstance(result, Refused):
        raise result.error
    return result
