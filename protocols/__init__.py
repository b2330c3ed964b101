"""plait.protocols: the protocol stack (framing, HTTP/1.1, WebSocket).

Each protocol is a sans-IO core plus a thin adapter onto ``plait.cluster``.
"""
