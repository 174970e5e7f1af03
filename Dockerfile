# One image for every imgpipe service; compose picks the service by its command (by default: ingest).
# Only requirements.txt: the embedded broker and database of `make run` are not in the image.
# Two stages: the packages are installed into a virtual environment in the first, and only that environment
# reaches the second, which has no pip (nor anything that could build or fetch a package) and runs as a user.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/imgpipe
WORKDIR /src
COPY requirements.txt constraints.txt ./
RUN /opt/imgpipe/bin/pip install -r requirements.txt -c constraints.txt
COPY schemas ./schemas
COPY libs ./libs
COPY services ./services
COPY ops ./ops
RUN /opt/imgpipe/bin/pip install --no-deps ./schemas ./libs/bus ./libs/runtime ./services/ingest \
        ./services/image-worker ./services/assembler ./services/notifier ./ops \
    && /opt/imgpipe/bin/pip uninstall --yes pip

FROM python:3.11.14-slim-bookworm
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
    && rm -f /usr/local/bin/pip /usr/local/bin/pip3*
COPY --from=build /opt/imgpipe /opt/imgpipe
ENV PATH=/opt/imgpipe/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 imgpipe
USER imgpipe
WORKDIR /home/imgpipe

# ingest's API: in a container it listens on every interface.
ENV IMGPIPE_HOST=0.0.0.0 IMGPIPE_PORT=8000
EXPOSE 8000
CMD ["ingest"]
