# One image for the four services: `trayecto serve ingest|orchestrator|delivery|metrics`,
# and `trayecto init` for topics and migrations.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRAYECTO_HTTP_HOST=0.0.0.0 \
    TRAYECTO_CACHE_DIR=/tmp/trayecto \
    TRAYECTO_CONTENT_DIR=/app/content
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin trayecto
# The dependencies come from the hashed runtime lock (docs/dependencies.md), in a layer
# of their own that a code change does not rebuild; `pip check` fails the build when the
# lock lacks something the project requires.
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --no-cache-dir --require-hashes --requirement /tmp/runtime.txt \
    && rm /tmp/runtime.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels && pip check
COPY content /app/content
COPY journeys /app/journeys
USER 10001
EXPOSE 8080 8090 8091 8092
ENTRYPOINT ["trayecto"]
CMD ["serve", "ingest"]
