"""Everything the API and the workers share: settings, the database, images, the job contract.

Import direction: `api -> storage` and `worker -> storage`; this package imports neither.
"""
