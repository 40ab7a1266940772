"""HTTP API: thin handlers over ingest, the store and the dispatcher."""
