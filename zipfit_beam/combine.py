"""Global combines shared by the jobs: several CombineFns in one pass (``NamedCombineFn``),
a global combine read only as a side input (``side_combine``) and a singleton one
(``global_combine``), both without Beam's default-injecting steps."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

__all__ = ["NamedCombineFn", "global_combine", "side_combine"]


class NamedCombineFn(beam.CombineFn):
    """Several CombineFns over the same input in one pass; the output is a ``named``
    NamedTuple whose fields are the results, so they are read by name, never by position
    (``NamedCombineFn(Parts, count=CountCombineFn(), top=TopCombineFn(10))``)."""

    def __init__(self, named, **fns: beam.CombineFn):
        if set(fns) != set(named._fields):
            raise ValueError(f"{named.__name__} needs combiners for {named._fields}, got {tuple(fns)}")
        self._named = named
        self._tuple = beam.combiners.SingleInputTupleCombineFn(*(fns[f] for f in named._fields))

    def create_accumulator(self):
        return self._tuple.create_accumulator()

    def add_input(self, acc, element):
        return self._tuple.add_input(acc, element)

    def merge_accumulators(self, accs):
        return self._tuple.merge_accumulators(accs)

    def compact(self, acc):
        return self._tuple.compact(acc)

    def extract_output(self, acc):
        return self._named(*self._tuple.extract_output(acc))


def side_combine(pcoll, label: str, fn) -> AsSingleton:
    """``AsSingleton(pcoll | label >> beam.CombineGlobally(fn))`` for a result read only as
    a side input, without the default-injecting steps of a plain CombineGlobally: the side
    input's default value, ``fn`` over no input, stands in for an empty ``pcoll``. The
    same value, three ParDos and one stage fewer (``.pvalue`` is the combined PCollection,
    empty for an empty input)."""
    fn = beam.CombineFn.maybe_from_callable(fn)
    return AsSingleton(pcoll | label >> beam.CombineGlobally(fn).without_defaults(),
                       default_value=fn.extract_output(fn.create_accumulator()))


def global_combine(pcoll, label: str, fn):
    """``pcoll | label >> beam.CombineGlobally(fn)``: the same singleton PCollection (``fn``
    over no input for an empty ``pcoll``), made by one Impulse that reads ``side_combine``'s
    side input instead of the default-injecting steps: three transforms fewer, and each
    transform costs the graph's construction and every runner's set-up a few milliseconds."""
    value = side_combine(pcoll, label, fn)
    return (pcoll.pipeline
            | f"{label}Once" >> beam.Impulse()
            | f"{label}Value" >> beam.Map(lambda _, v: v, value))
