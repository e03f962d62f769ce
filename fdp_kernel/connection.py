"""``fdp_kernel.connect``: a workspace for the person running this, embedded or at the node
service.

With ``FDP_SERVICE`` set (where the node service is: a location, not an identity) the
workspace is a thin client of the service (``fdp_kernel.service.client``), which decides who is
asking from the connection. Otherwise it is the embedded workspace in this process
(``fdp_kernel.workspace``): the person is ``JUPYTERHUB_USER``, else the OS account, and nothing
in the process is a security boundary (docs/governance.md).
"""

from __future__ import annotations

import os

from fdp_kernel.config import find_federation, load_federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance import policy
from fdp_kernel.governance.recorder import Recorder
from fdp_kernel.service.client import SERVICE_ENV
from fdp_kernel.workspace import Workspace


def connect(purpose: str, org: str | None = None) -> Workspace:
    """A workspace for the person running this, acting for ``purpose`` at ``org``.

    ``org`` may be left out when the user acts for one organisation only. A purpose or org the
    user does not hold is refused with an error listing what they do hold. With ``FDP_SERVICE``
    set, the workspace is a thin client of the node service (``fdp_kernel.service.client``),
    which decides who you are from the connection.
    """
    if os.environ.get(SERVICE_ENV):
        from fdp_kernel.service.client import connect as connect_to_service

        return connect_to_service(purpose, org)
    fed = load_federation(find_federation(os.environ))
    user_id = policy.identify(os.environ)
    try:
        user, purpose_obj, org, decision = policy.authorise(fed, user_id, purpose, org)
    except GovernanceError as exc:
        raise Recorder(fed, user_id, org or "?", purpose).refused("connect", exc) from None
    return Workspace(fed, user.id, purpose_obj, org, decision)


__all__ = ["connect"]
