"""The OTel metrics projection: totals derived from the stores, exported to Prometheus and OTLP."""
