# The image the KubeRay manifests in deploy/kuberay/ run: Ray's own image for the pinned Ray version, with this
# package installed. CPU by default; for GPU workers build with
#   docker build --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t REGISTRY/ray-rag:gpu .
# and add the faiss-gpu extra (EXTRAS=gpu) if the index should be built on the GPU.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=""
WORKDIR /home/ray/app

# torch first, from the index that matches the image (CPU or CUDA), so the package's pin finds it installed.
RUN pip install --no-cache-dir --index-url ${TORCH_INDEX} torch==2.13.0
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users rag rag
COPY --chown=ray:users ingest ingest
COPY --chown=ray:users serving serving
COPY --chown=ray:users eval eval
COPY --chown=ray:users cli cli
COPY --chown=ray:users configs configs
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
