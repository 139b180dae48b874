# Image of the classification service for compose.yaml; build from the repository root.
# Models are not baked in: compose mounts ../models, built on the host by `make models`.
FROM python:3.11-slim

WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 \
    BENTOML_DO_NOT_TRACK=true \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

# torch first, from the CPU wheel index, so no later requirement pulls a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY service ./service
COPY mapping ./mapping
COPY evaluation ./evaluation
COPY bench ./bench
COPY loadtests ./loadtests
RUN pip install .

EXPOSE 3000 50051
CMD ["bentoml", "serve", "service.service:Classifier", "--host", "0.0.0.0", "--port", "3000"]
