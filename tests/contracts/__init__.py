"""Contract suites of the money logic, run on fakeredis (tests/unit) and on a real
redis-server (tests/integration) alike, so that the two backends cannot drift."""
