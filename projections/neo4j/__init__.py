"""Neo4j projections: the store base (``Neo4jProjection``) and one module per graph.

``session_graph`` (``SessionGraph``) is built from ``session_graph_batch`` (folding a batch into
rows), ``session_graph_facts`` (fact nodes and the aggregates derived from them) and
``session_graph_lineage`` (the relink pass).
"""

__all__: list[str] = []
