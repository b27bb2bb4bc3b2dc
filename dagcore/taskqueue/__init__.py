"""Queueing work for Celery workers, or for the in-process runner when there is no broker.

Apart from ``dagcore.tasks`` (the task definitions, which import the actions) so that
actions can queue tasks, by name, without an import cycle.
"""
