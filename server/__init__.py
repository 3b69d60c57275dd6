"""Confide's server: the websocket hub, the HTTP API, the store and the broker."""
