"""MovieRecs' LocalStack extension: a local-process Lambda executor and a Kafka ESM poller.

Installed (editable) into LocalStack's own Python 3.13 venv; LocalStack finds the pieces
through plux entry points declared in ``pyproject.toml``:

* ``localstack.lambda.runtime_executor`` / ``movierecs-process`` -> :mod:`.executor`
* ``localstack.hooks.lambda_create_event_source_poller`` -> :mod:`.kafka_poller`
* ``localstack.hooks.lambda_set_event_source_config_defaults`` -> :mod:`.kafka_poller`

Modules that import LocalStack are loaded lazily by the plugins, so the pure pieces
(:mod:`.worker`, :mod:`.kafka_event`, :mod:`.paths`) import on any Python >= 3.11.
"""

__version__ = "0.1.0"
