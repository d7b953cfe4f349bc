"""`ogrt report`: questions answered from the SQLite or PostgreSQL outputs."""
