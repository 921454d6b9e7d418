# One image for every service of docker-compose.yml: api, worker, ops-worker, beat, migrate.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HOME=/models
# g++: torch.compile (INPAINT_TORCH_COMPILE) builds Triton's launchers and inductor's CPU kernels with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libglib2.0-0 g++ \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 inpaint \
 && mkdir -p /data /models && chown inpaint:inpaint /data /models

WORKDIR /app
# torch first and pinned: an unpinned torch pulls the newest build. On Linux the
# PyPI wheel of torch 2.13.0 is the CUDA build the GPU worker needs.
RUN pip install torch==2.13.0
COPY pyproject.toml README.md alembic.ini ./
COPY admin ./admin
COPY api ./api
COPY worker ./worker
COPY storage ./storage
COPY migrations ./migrations
RUN pip install -e ".[worker]"

USER inpaint
EXPOSE 8000
CMD ["inpaint-api", "--host", "0.0.0.0", "--port", "8000"]
