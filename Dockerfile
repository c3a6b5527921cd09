# One Dockerfile for the API and the Celery worker; EXTRAS picks the installed extras of `plateau`:
#
#   API (no TensorFlow):          docker build -t plateau .
#   Worker (CUDA TensorFlow):     docker build -t plateau:cuda --build-arg EXTRAS=worker-gpu .
#   Worker (CPU TensorFlow):      docker build -t plateau:cpu --build-arg EXTRAS=worker .
#
# `worker-gpu` depends on `tensorflow[and-cuda]`, which pulls the CUDA and cuDNN libraries
# from PyPI, so the base image stays python:3.11-slim and the host only needs the NVIDIA
# driver and the NVIDIA Container Toolkit.
FROM python:3.11-slim

ARG EXTRAS="server"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing the code does not
# reinstall TensorFlow. The packages are not copied yet: this installs the dependencies
# of the chosen extras and an empty `plateau` distribution.
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir ".[${EXTRAS}]"

# The code; its dependencies are already there.
COPY . .
RUN pip install --no-cache-dir --no-deps . ./server \
    && useradd --create-home --uid 10001 plateau \
    && mkdir -p /data /artifacts /app/var \
    && chown plateau:plateau /data /artifacts /app/var
# (A named volume mounted on /data or /artifacts starts out with this ownership.)

USER plateau

EXPOSE 8000

# The API. The worker overrides the command:
#   celery -A worker.celery_app worker -P solo -Q gpu --concurrency 1 --loglevel INFO
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
