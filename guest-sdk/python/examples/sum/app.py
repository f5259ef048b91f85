"""`sum` in Python: adds i64 values (reduceByKey's `_ + _`); overflow wraps, as in Rust."""

from spate_guest import Combiner, Info, Monoid, ValueType
from spate_guest.export import export_combiner


class Sum(Combiner):
    value_type = ValueType.I64

    @staticmethod
    def info():
        return Info(
            name="sum",
            description="adds i64 values",
            value_type=ValueType.I64,
            # A promise that combine is exactly this, so upstream operators may pre-combine.
            monoid=Monoid.SUM_I64,
        )

    def combine(self, acc, value):
        return acc + value  # wrapped to 64 bits when encoded


Combiner = export_combiner(Sum)
