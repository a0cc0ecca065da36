"""Beteiligte sync engine: pure Python, no Airflow import."""
