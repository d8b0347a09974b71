"""Conveyor's DAGs, generated from the project's ``conveyor.yaml`` (``CONVEYOR_PROJECT``, else the
folder above this one): a poll DAG per polling system, file drops, reconciliation, replay,
material master and parking events. What each does: ``conveyor/airflow/dags.py`` and
docs/airflow.md."""

from __future__ import annotations

from conveyor.airflow.dags import build

globals().update(build(__file__))
