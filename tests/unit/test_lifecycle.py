"""The one SIGTERM / SIGINT handler: deferred around native callbacks, held around commits, once only."""

import os
import signal

import pytest

from mlrecipes import lifecycle


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    lifecycle.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_signal_inside_signals_deferred_is_raised_on_exit(handlers):
    reached_end_of_block = False
    with pytest.raises(lifecycle.Terminated):
        with lifecycle.signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, between bytecodes
            reached_end_of_block = True
    assert reached_end_of_block  # nothing was raised inside (i.e. inside the native callback)


def test_signal_outside_is_raised_at_once(handlers):
    with pytest.raises(lifecycle.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # never reached: the handler raises first


def test_signal_while_held_is_only_remembered(handlers):
    signals = lifecycle.SIGNALS
    with signals.held():
        os.kill(os.getpid(), signal.SIGTERM)  # no Terminated inside: the commit completes
    assert signals.received


def test_second_signal_is_ignored_so_the_run_can_close(handlers):
    with pytest.raises(lifecycle.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
    os.kill(os.getpid(), signal.SIGTERM)  # closing the run: nothing raised
