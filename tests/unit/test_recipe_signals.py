"""A SIGTERM during native code that calls back into Python waits until that code has returned."""

import os
import signal

import pytest

from mlrecipes import recipe


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    recipe.install_signal_handlers()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_signal_inside_signals_deferred_is_raised_on_exit(handlers):
    reached_end_of_block = False
    with pytest.raises(recipe.Terminated):
        with recipe.signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, between bytecodes
            reached_end_of_block = True
    assert reached_end_of_block  # nothing was raised inside (i.e. inside the native callback)


def test_signal_outside_is_raised_at_once(handlers):
    with pytest.raises(recipe.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # never reached: the handler raises first
