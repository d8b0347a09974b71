"""The recording HTTP target of the tests is the shipped ``http-target`` simulator
(``simulators.http_target``); this name stays for the tests that import it from here."""

from simulators.http_target import Behaviour, HttpTarget

RecordingTarget = HttpTarget

__all__ = ["Behaviour", "RecordingTarget"]
