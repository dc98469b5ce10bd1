"""Data contracts only: pydantic v2 models of every topic's key and value. No I/O."""
