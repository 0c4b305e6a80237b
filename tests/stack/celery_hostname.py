"""`[core] hostname_callable` of the native Celery test's workers (tests/stack/test_native_celery.py).

In compose every worker is its own container with its own hostname; natively the two workers share
one machine, so each reports the name the test gives it in MLRECIPES_TEST_HOSTNAME instead.
"""

import os


def hostname() -> str:
    return os.environ["MLRECIPES_TEST_HOSTNAME"]
