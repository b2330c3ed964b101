"""plait.cluster: what every Plait process runs.

Deferreds and failures, interfaces, the reactors and their transports, time and
tasks, threads, child processes, endpoints, the RPC bus and test helpers. The
public modules (``defer``, ``failure``, ``task``, ``interfaces``, ...) re-export
from private implementation modules, as trio does.
"""
