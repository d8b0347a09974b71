# Airflow 3 with Conveyor installed, so DAG files in dags/ import the engine.
FROM apache/airflow:3.0.6-python3.11
COPY --chown=airflow:root pyproject.toml README.md /opt/conveyor/
COPY --chown=airflow:root conveyor /opt/conveyor/conveyor
COPY --chown=airflow:root connectors /opt/conveyor/connectors
COPY --chown=airflow:root schemas /opt/conveyor/schemas
RUN pip install --no-cache-dir /opt/conveyor
COPY --chown=airflow:root dags /opt/conveyor/dags
COPY --chown=airflow:root mappings /opt/conveyor/mappings
COPY --chown=airflow:root master_data /opt/conveyor/master_data
COPY --chown=airflow:root conveyor.yaml /opt/conveyor/conveyor.yaml
