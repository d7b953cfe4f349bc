"""Receivers: TCP (asyncio protocol) and UDP (a dedicated thread)."""
