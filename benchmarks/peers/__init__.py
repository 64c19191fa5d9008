"""The peers users would otherwise assemble, served on this machine for the same synthetic customers.

* ``FeastPeer``: Feast's Python feature server (``feast serve``) over a Redis online store, features only,
  called with HTTP ``POST /get-online-features``.
* ``MLServerPeer``: Seldon MLServer with its LightGBM runtime serving the demo model, scoring only, called with
  the V2 inference protocol's gRPC ``ModelInfer``: one request with a customer's candidate rows.

Each installs into its own venv under ``.nba-data/peers/`` (pinned versions, once), and has the same shape::

    peer.install()
    with peer.start(...):      # writes its files, starts its server, checks its answers, stops it on exit
        peer.call(i)           # one request for customer i; raises WrongAnswer on a wrong answer

``python -m benchmarks.peers`` measures them sequentially.
"""

from benchmarks.peers.errors import PeerStartError, WrongAnswer
from benchmarks.peers.feast_peer import FeastPeer
from benchmarks.peers.mlserver_peer import MLServerPeer
from benchmarks.peers.venv import DEFAULT_ROOT, InstallError, PeerVenv

__all__ = [
    "DEFAULT_ROOT",
    "FeastPeer",
    "InstallError",
    "MLServerPeer",
    "PeerStartError",
    "PeerVenv",
    "WrongAnswer",
]
