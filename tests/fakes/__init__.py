"""Faithful in-process fakes of the engines that cannot run here (Jenkins) or that are slow to
start (Airflow), reproducing the HTTP behaviour in shared/reference/engine-apis.md."""
