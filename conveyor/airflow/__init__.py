"""Conveyor inside Airflow: the provider, its operators and triggers, and the operator's page."""
