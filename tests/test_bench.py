"""The benchmark's timing helper: the sides of a ratio are timed in turn, and each keeps its own best."""

from mosaic.bench.common import best_interleaved


def test_best_interleaved_times_the_measures_in_turn_and_keeps_each_ones_minimum():
    calls = []
    readings = {"bare": iter([3.0, 1.0, 2.0]), "ours": iter([5.0, 6.0, 4.0])}

    def measure(name):
        def timed():
            calls.append(name)
            return next(readings[name])
        return timed

    best = best_interleaved(3, measure("bare"), measure("ours"))

    assert calls == ["bare", "ours"] * 3  # never one side's repeats back to back
    assert best == [1.0, 4.0]
