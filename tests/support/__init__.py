"""Test support: real Confide nodes on free ports and a small protocol client."""
