# One image for every process of the fleet: worker, beat, flower and web differ only by
# command (see docker-compose.yml and the Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid, so files on the shared renders volume have one owner on every host.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && mkdir -p /renders \
    && chown app:app /renders

WORKDIR /src
COPY . .
# Installed into site-packages, then the sources go: the processes run the installed copy.
RUN pip install . \
    && rm -rf /src

USER app
# Writable working directory: celery beat keeps its schedule file here.
WORKDIR /home/app
ENV RELAYDANCE_OUTPUT_DIR=/renders

EXPOSE 8000 5555
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO", "--pool", "threads", "--concurrency", "16"]
