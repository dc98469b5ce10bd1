"""Postgres read models: the store base and one module per projection."""
