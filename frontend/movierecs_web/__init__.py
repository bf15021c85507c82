"""MovieRecs web frontend (Reflex): recommendations page and ops page over the API Gateway."""
