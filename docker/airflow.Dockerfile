# syntax=docker/dockerfile:1
# Airflow 3.3 with Conveyor installed (engine, connectors, the Airflow provider, its triggers and
# the UI plugin): one image for airflow-init, the api-server, scheduler, dag-processor, triggerer
# and Celery workers. Build from the repository root:
#   docker build -f docker/airflow.Dockerfile -t conveyor-airflow:0.1.0 .

# --- stage 1: build the wheel --------------------------------------------------------------------
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY conveyor ./conveyor
COPY connectors ./connectors
COPY simulators ./simulators
RUN pip wheel --no-deps --wheel-dir /dist .

# --- stage 2: the Airflow image ------------------------------------------------------------------
FROM apache/airflow:3.3.2-python3.12
# pip runs as the image's airflow user (as Airflow's image expects); pinning apache-airflow to the
# image's own version keeps the `airflow` extra from upgrading or downgrading Airflow
COPY --from=build /dist/ /tmp/dist/
RUN WHEEL="$(ls /tmp/dist/conveyor_hub-*.whl)" \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "${WHEEL}[airflow]" \
 && python -c "from conveyor.paths import schemas_dir; assert (schemas_dir() / 'envelope.json').is_file()"
USER root
RUN rm -rf /tmp/dist && mkdir -p /opt/conveyor && chown airflow:root /opt/conveyor
USER airflow
# DAG files and the project they read (conveyor.yaml, mappings, master data)
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root conveyor.yaml /opt/conveyor/conveyor.yaml
COPY --chown=airflow:root mappings /opt/conveyor/mappings
COPY --chown=airflow:root master_data /opt/conveyor/master_data
ENV CONVEYOR_PROJECT=/opt/conveyor
