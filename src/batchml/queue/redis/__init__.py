"""The networked backend: Redis, one Lua script (one round trip) per operation.

``queue`` the WorkQueue itself, ``keys`` every key of a queue (the one source of the key layout),
``url`` the queue URL and the connection, ``errors`` redis-py errors turned into ours,
``scripts`` loading and calling ``lua/*.lua``.
"""
