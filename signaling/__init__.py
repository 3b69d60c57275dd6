"""Live-session signaling, the pure part: the join gate, `live.signal` checks and TURN credentials.

Nothing here does I/O, reads a clock or starts a task. The websocket hub (`server/`)
decodes frames, calls these rules with `now`, and turns what they return into frames:

- `signaling.gate`     the join gate of one live session (R10), with its attendance record
- `signaling.events`   what the gate returns, one event per recipient, and their wire frames
- `signaling.payload`  checks a `live.signal` `data` map: kind, shape, size (R6, R3)
- `signaling.sdp`      reads the media sections of an SDP and fits them to a modality
- `signaling.turn`     short-lived TURN credentials (coturn REST scheme) and `ice_servers`
"""
