"""Shared code of the MovieRecs functions: config, clients, the like event, HTTP errors, telemetry."""
