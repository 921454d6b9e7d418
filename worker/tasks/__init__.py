"""Celery tasks, one module per queue. A process imports only the modules of the queues it consumes."""
