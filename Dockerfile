# One image for every imgpipe service; compose picks the service by its command (by default: ingest).
# Only requirements.txt: the embedded broker and database of `make run` are not in the image.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY schemas ./schemas
COPY libs ./libs
COPY services ./services
COPY ops ./ops
RUN pip install --no-cache-dir --no-deps ./schemas ./libs/bus ./libs/runtime ./services/ingest \
        ./services/image-worker ./services/assembler ./services/notifier ./ops

RUN useradd --system --uid 10001 imgpipe
USER imgpipe

# ingest's API: in a container it listens on every interface.
ENV IMGPIPE_HOST=0.0.0.0 IMGPIPE_PORT=8000
EXPOSE 8000
CMD ["ingest"]
