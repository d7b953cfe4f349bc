"""The SQL schema shared by the sqlite and postgresql outputs and by `ogrt report`.

`schema.py` holds its version, columns and statements; `sqlite.sql` and `postgresql.sql`
create it.
"""
