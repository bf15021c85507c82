"""Fails in the two ways Lambda reports: an unhandled error and a timeout."""

import os
import time


class ExtTestError(Exception):
    pass


def raise_error(event, context):
    _inner(event.get("message", "planned failure"))


def _inner(message):
    raise ExtTestError(message)


def sleep(event, context):
    print("going to sleep")
    time.sleep(float(event.get("seconds", 5)))
    return {"slept": True, "pid": os.getpid()}
