"""The engine: torch, diffusers and OpenCV. Turns a job's parameters and inputs into images.

It never touches the database, object storage or Celery (worker.jobs does).
"""
