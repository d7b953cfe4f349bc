"""Process supervision: `workers = N` worker processes sharing the port (SO_REUSEPORT)."""
