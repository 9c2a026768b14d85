"""Transactions: the stored schema, the simulator, importing datasets, and the safe unpickler."""
