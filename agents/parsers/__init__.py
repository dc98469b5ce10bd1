"""The per-source parsers: one module per source, each a pure ``decide(FileChanged) -> events``
registered for its producer class (:func:`agents.parsers.registry.parses`); helper modules
(``lines``, ``markdown_checklist``, ``*_content``, ``*_fields``) register nothing."""
