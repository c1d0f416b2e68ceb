"""Peers: other schedulers run on gridcharge's instances through adapters (optional extra ``gridcharge[peers]``).

Only names live here, so that the runner can check ``--solvers acnportal:edf`` without importing acnportal; the
adapter itself is :mod:`gridcharge.bench.peers.acnportal`.
"""

#: acnportal algorithms the adapter runs (``--solvers acnportal:<name>``).
PEER_ALGORITHMS = ("edf", "llf", "round_robin", "uncontrolled")
