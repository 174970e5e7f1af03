# One image for every imgpipe service; compose picks the service by its command.
FROM python:3.11-slim

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
