"""The per-object deadline: a probe that has run too long gives up before its next request, as a read failure."""

from __future__ import annotations

from demo import synth
from media.probe import READ_FAILED, probe
from media.ranges import DEFAULT_DEADLINE_S, RangeReader


class FakeClock:
    """Advances by `step` seconds every time it is read: each request appears to take that long."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_probe_gives_up_as_a_read_failure() -> None:
    data = synth.jpeg(2400, 1800, orientation=1, exif_extra_bytes=30_000)  # needs two requests
    view = memoryview(data)
    reader = RangeReader(lambda s, e: bytes(view[s:e]), len(data), deadline_s=10, clock=FakeClock(step=11))
    facts = probe(reader)
    assert facts.error is not None
    assert facts.error.startswith(f"{READ_FAILED}probe gave up after 11 s (deadline 10 s)")
    assert facts.requests == 1, "the first request ran; the second was never sent"


def test_a_prompt_probe_is_untouched_by_the_deadline() -> None:
    data = synth.jpeg(2400, 1800, orientation=1, exif_extra_bytes=30_000)
    view = memoryview(data)
    reader = RangeReader(lambda s, e: bytes(view[s:e]), len(data), deadline_s=10, clock=FakeClock(step=1))
    facts = probe(reader)
    assert facts.error is None and facts.width == 2400


def test_default_deadline_and_none_disables_it() -> None:
    assert DEFAULT_DEADLINE_S == 120.0
    data = synth.png(20, 10)
    view = memoryview(data)
    reader = RangeReader(lambda s, e: bytes(view[s:e]), len(data), deadline_s=None, clock=FakeClock(step=1e6))
    assert probe(reader).error is None
