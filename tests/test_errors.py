"""cae.errors: the one-line reasons a failed or stopped trial is tagged with."""

import errno

from cae.errors import clear_stop, failure_reason, request_stop


def test_an_interrupted_trial_says_whether_ctrl_c_or_sigterm_stopped_it():
    assert failure_reason(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    request_stop()  # what the CLI's SIGTERM handler does before it raises KeyboardInterrupt
    try:
        assert failure_reason(KeyboardInterrupt()) == "interrupted (SIGTERM)"
    finally:
        clear_stop()
    assert failure_reason(KeyboardInterrupt()) == "interrupted (Ctrl-C)"


def test_a_failure_reason_is_the_type_and_the_first_line_of_the_message():
    assert failure_reason(ValueError("bad value\n  traceback lines")) == "ValueError: bad value"
    assert failure_reason(RuntimeError()) == "RuntimeError"
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/model.keras")
    assert failure_reason(full) == "no space left on /data/out"


def test_a_background_thread_that_dies_says_one_line_naming_the_root_cause(capsys):
    """Optuna's heartbeat thread dies on a full disk: one note, no traceback (the main thread reports the fault)."""
    import sqlite3
    import threading

    from cae.cli import _thread_died

    def heartbeat() -> None:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as err:
            raise RuntimeError("An exception is raised during the commit.\nSQL: UPDATE ...") from err

    previous, threading.excepthook = threading.excepthook, _thread_died
    try:
        thread = threading.Thread(target=heartbeat, name="heartbeat")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
    assert capsys.readouterr().err == "note: heartbeat stopped: database or disk is full\n"
