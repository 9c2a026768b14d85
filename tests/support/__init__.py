"""Helpers the suites share: processes, clocks, a Redis server, the queue contract, fixtures."""
