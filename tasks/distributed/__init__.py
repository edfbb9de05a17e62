"""Distribution: the Celery orchestrator and workers, the broker, the task message schema."""
