"""The per-source parsers: one module per source, each a pure ``decide(FileChanged) -> events``."""
