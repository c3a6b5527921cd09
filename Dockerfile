# One image for the API and the Celery worker.
#
#   API (CPU TensorFlow, as pyproject.toml pins it):
#     docker build -t plateau .
#   Worker (GPU TensorFlow):
#     docker build -t plateau:cuda --build-arg TF_PACKAGE='tensorflow[and-cuda]' .
#
# The project depends on `tensorflow-cpu` on x86_64. When TF_PACKAGE is set, that
# package is uninstalled and TF_PACKAGE is installed in its place; `tensorflow[and-cuda]`
# pulls the CUDA and cuDNN libraries from PyPI, so the base image stays python:3.11-slim
# and the host only needs the NVIDIA driver and the NVIDIA Container Toolkit. Pin it,
# e.g. TF_PACKAGE='tensorflow[and-cuda]==2.18.*', to match the API's tensorflow-cpu.
FROM python:3.11-slim

ARG TF_PACKAGE=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing the code does not
# reinstall TensorFlow. The packages are not copied yet: this installs the dependencies
# and an empty `plateau` distribution.
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir .

# The worker image swaps the CPU build of TensorFlow for TF_PACKAGE.
RUN if [ -n "$TF_PACKAGE" ]; then \
        pip uninstall -y tensorflow-cpu tensorflow \
        && pip install --no-cache-dir "$TF_PACKAGE"; \
    fi

# The code. --no-deps keeps the TensorFlow chosen above.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 plateau \
    && mkdir -p /data /artifacts /app/var \
    && chown plateau:plateau /data /artifacts /app/var
# (A named volume mounted on /data or /artifacts starts out with this ownership.)

USER plateau

EXPOSE 8000

# The API. The worker overrides the command:
#   celery -A worker.celery_app worker -P solo -Q gpu --concurrency 1 --loglevel INFO
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
