# One image for the four services: `trayecto serve ingest|orchestrator|delivery|metrics`,
# and `trayecto init` for topics and migrations.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRAYECTO_HTTP_HOST=0.0.0.0 \
    TRAYECTO_CACHE_DIR=/tmp/trayecto \
    TRAYECTO_CONTENT_DIR=/app/content
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin trayecto
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY content /app/content
COPY journeys /app/journeys
USER 10001
EXPOSE 8080 8090 8091 8092
ENTRYPOINT ["trayecto"]
CMD ["serve", "ingest"]
