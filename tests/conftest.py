"""Shared pytest fixtures, one plugin module per part of the system."""
pytest_plugins = [
    "tests.fixtures.preload",   # build and locate preload/libogrt.so, run programs under it
    "tests.fixtures.server",    # start a real `ogrt server` process on free ports
    "tests.fixtures.postgres",  # a real PostgreSQL started in a temp dir
    "tests.fixtures.nats",      # real nats-server processes: three clustered on loopback, or one
    "tests.fixtures.sink",      # real `ogrt sink` processes
    "tests.fixtures.munge",     # real munged daemons with keys in temp dirs
    "tests.fixtures.relay",     # real `ogrt relay` processes
]
