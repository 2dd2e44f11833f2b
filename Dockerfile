# DSM Explorer as a Hugging Face Space (Docker SDK): the Streamlit app on the bundled CPU model.
# Build and run locally:  docker build -t dsm-explorer . && docker run -p 8501:8501 dsm-explorer
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    DSM_TORCH_THREADS=1

# Spaces run the container as uid 1000.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# torch first, from the CPU index: requirements.txt asks only for torch>=2.4, which this satisfies,
# so pip never pulls a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY --chown=user:user requirements.txt pyproject.toml ./
RUN pip install -r requirements.txt

COPY --chown=user:user . .
RUN pip install --no-deps -e .

USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH

EXPOSE 8501
CMD ["streamlit", "run", "app/main.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.enableXsrfProtection=false"]
