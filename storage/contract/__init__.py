"""The contract of a job: the wire bodies, the resolved parameters, model specs and asset names.

Pure pydantic: nothing here imports SQLAlchemy, so any process, client or test can
validate a request without a database.
"""
