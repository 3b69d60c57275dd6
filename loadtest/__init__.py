"""The Confide load tester: simulated users that drive a running node and count every message.

See ``docs/benchmarks.md`` for the scenarios and the standard benchmark, and
``confide-loadtest --help`` for the command line.
"""
