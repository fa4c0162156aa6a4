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
