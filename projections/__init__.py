"""Read models: a store base per store (Postgres, Neo4j, OTel) and one file per projection."""
