"""Shared fixtures. Redis fixtures live in tests/redis_server.py (session-scoped server)."""
