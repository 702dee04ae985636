"""`make run` output stays readable: Celery's routine per-task lines are logged at debug level."""

import logging

from config.logging import RoutineTaskFilter


def _record(name: str, msg: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_beat_and_worker_routine_lines_are_debug(caplog):
    routine = RoutineTaskFilter()
    root = logging.getLogger()
    old = root.level
    try:
        root.setLevel(logging.INFO)
        beat = _record("celery.beat", "Scheduler: Sending due task %s (%s)")
        assert routine.filter(beat) is False
        assert beat.levelname == "DEBUG"
        assert routine.filter(_record("celery.worker.strategy", "Task %(name)s[%(id)s] received")) is False
        # Failures and other lines keep their level.
        failure = _record("celery.app.trace", "Task %(name)s[%(id)s] raised unexpected", logging.ERROR)
        assert routine.filter(failure) is True and failure.levelname == "ERROR"
        assert routine.filter(_record("celery.beat", "beat: Starting...")) is True
        root.setLevel(logging.DEBUG)
        assert routine.filter(_record("celery.beat", "Scheduler: Sending due task x (y)")) is True
    finally:
        root.setLevel(old)


def test_the_filter_sits_on_celerys_routine_loggers():
    for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        assert any(isinstance(f, RoutineTaskFilter) for f in logging.getLogger(name).filters), name
