"""`ogrt web`: a read-only dashboard over the report database (needs the `web` extra).

The package's modules import Starlette/uvicorn only where they serve (app.py, serve.py);
passwords.py is plain Python, so the config checker can use it without the extra.
"""
