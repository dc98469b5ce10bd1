"""Neo4j projections: the store base (``Neo4jProjection``) and one module per graph."""
