"""Read models: a store base per store (Postgres, Neo4j, OTel) and one file per projection.

Each projection registers itself (:mod:`projections.registry`); a store package holds its base
and its projections, and a projection too big for one file keeps its parts beside it.
"""

__all__: list[str] = []
