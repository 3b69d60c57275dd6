"""Confide session rules, pure: no sockets, no database, no clock."""
