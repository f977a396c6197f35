# stn-demo: the Gradio demo of Spatial Transformer Networks, served on port 7860, CPU only.
#   docker build -t stn-demo . && docker run -p 7860:7860 stn-demo
# The image only serves: the weights in models/ are copied in, nothing is trained or downloaded at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PyTorch's CPU wheels (a few hundred MB) rather than PyPI's CUDA build (several GB);
# the same range as requirements.txt, so the next step finds torch satisfied and leaves it alone.
RUN pip install --no-cache-dir "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu

# The rest of the app's requirements, into the system site-packages, before the code (a layer that rarely changes).
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt

# Hugging Face Spaces run containers as uid 1000 ("user"); USER takes the number so any host can resolve it.
RUN useradd -m -u 1000 user
USER 1000
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH
WORKDIR $HOME/app
COPY --chown=user . $HOME/app

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860

# No curl in the slim image: Python's urllib fails (exit 1) unless / answers 2xx.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://localhost:7860/', timeout=5).status != 200)"]

CMD ["python", "app.py"]
