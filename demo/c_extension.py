"""Demo workload: a Python script whose imports dlopen() C extensions (_ssl, _sqlite3).

OGRT reports these shared objects in the process's end record (loaded after start).
"""
import sqlite3
import ssl

with sqlite3.connect(":memory:") as db:
    (answer,) = db.execute("SELECT 6 * 7").fetchone()
print(f"python: {ssl.OPENSSL_VERSION}, SQLite {sqlite3.sqlite_version}, 6*7={answer}")
