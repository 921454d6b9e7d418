"""The database: ORM models, engines and transactions, and the queries of each table.

The schema comes from the Alembic migrations alone. Every status change of a job
goes through storage.database.jobs.
"""
