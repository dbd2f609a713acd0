# One image for the compose services: sweeper with the lock's torch (PyPI's Linux wheels bundle
# CUDA), the full MLflow (the `ui` extra: the server service runs `mlflow server` from it) and
# Chromium for PNG figures.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY sweeper ./sweeper
RUN pip install --no-cache-dir -c requirements.lock '.[ui]'
COPY experiments ./experiments
ENV SWEEPER_DATA_DIR=/data
CMD ["sweeper", "--help"]
