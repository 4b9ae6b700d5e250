# The image of configs/kuberay/*.yaml: Ray 2.60 (Python 3.11) with prescale installed.
#   docker build -t prescale:latest .
FROM rayproject/ray:2.60.0-py311
COPY --chown=ray:users . /opt/prescale
WORKDIR /opt/prescale
RUN pip install --no-cache-dir /opt/prescale
