"""The MovieRecs local stack orchestrator: ``python -m movierecs_stack up|down|status|deploy``.

It runs the local cloud as plain processes on 127.0.0.1 (no Docker): PostgreSQL, the chDB
ClickHouse HTTP endpoint, LocalStack with the project's Lambda executor, the Apache Kafka
broker and the frontend; deploys template.yaml through SAM; writes .movierecs/endpoints.json.
Every process it starts leads its own process group and is recorded in .movierecs/pids/,
so ``down`` stops exactly those and nothing else.
"""
