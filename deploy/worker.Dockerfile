# The Onward worker image, built by temporal-dev.yml from the repository root:
# this project with the OTLP exporter and the PostgreSQL transcript store.
# deploy/worker.Dockerfile.dockerignore keeps the context to these sources.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
# onward/workflows, onward/activities, onward/starter and onward/worker.py are
# symlinks into the top-level folders: both sides are copied.
COPY onward/ onward/
COPY workflows/ workflows/
COPY activities/ activities/
COPY starter/ starter/
COPY worker.py ./
RUN pip install ".[otlp,postgres,s3]" && rm -rf /src

# Every volume temporal-dev.yml mounts is made here, the worker's: Docker would
# make a missing mount point root's, and the worker's start refuses a directory
# it cannot write to.
RUN useradd --create-home --uid 10001 onward \
    && mkdir /workspace /payloads \
    && chown onward:onward /workspace /payloads
USER onward
WORKDIR /home/onward
ENV ONWARD_WORKSPACE=/workspace

CMD ["onward", "worker"]
