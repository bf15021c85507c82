"""A module that exists only in the test layer: functions import it to prove layers apply."""

LAYER_VALUE = "from-ext-test-layer"
