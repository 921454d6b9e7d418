# Two images from one file (docker-compose.yml builds both):
#   --target api     the slim image: the API, migrations, storage init, the ops worker and
#                    beat. No torch, diffusers or CUDA: none of these imports them.
#   --target worker  the GPU inference worker: the api image plus torch and diffusers.
# Dependencies install from the lock (constraints.txt) before the code is copied, so a
# change of code rebuilds only the last layers.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# curl: the API's healthcheck calls /readyz with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 inpaint \
 && mkdir -p /data /models && chown inpaint:inpaint /data /models
WORKDIR /app
COPY pyproject.toml constraints.txt scripts/requirements.py ./


FROM base AS api-deps
RUN python requirements.py > requirements.txt \
 && pip install -c constraints.txt -r requirements.txt


FROM base AS worker-deps
# g++: torch.compile (INPAINT_TORCH_COMPILE) builds Triton's launchers and inductor's CPU
# kernels with it. libglib2.0-0: OpenCV.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
# torch 2.13.0 as the lock pins it: on Linux the registry's wheel is the CUDA build, which
# brings its own pinned CUDA libraries.
RUN python requirements.py worker > requirements.txt \
 && pip install -c constraints.txt -r requirements.txt


# The code, one list for both images, copied last: the project installs without touching the
# dependencies. Editable, as in a checkout: `inpaint-admin migrate` finds alembic.ini and
# migrations/ beside the code.
FROM scratch AS source
COPY README.md alembic.ini /app/
COPY admin /app/admin
COPY api /app/api
COPY worker /app/worker
COPY storage /app/storage
COPY migrations /app/migrations


FROM api-deps AS api
COPY --from=source /app ./
RUN pip install --no-deps -e .
USER inpaint
EXPOSE 8000
CMD ["inpaint-api", "--host", "0.0.0.0", "--port", "8000"]


FROM worker-deps AS worker
ENV HF_HOME=/models
COPY --from=source /app ./
RUN pip install --no-deps -e .
USER inpaint
CMD ["inpaint-worker", "run", "--queues", "inpaint", "--pool", "solo"]
