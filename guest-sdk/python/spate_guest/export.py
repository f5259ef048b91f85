"""The component exports: wrap a `Transform` or `Combiner` class into the object that
componentize-py calls.

In the operator's app module:

    from spate_guest.export import export_transform
    Transform = export_transform(Tokenize)      # the name componentize-py looks for

The bindings componentize-py generates for the world being built (`wit_world`) exist only
inside `componentize-py componentize`; natively (unit tests) this module still imports, and
the exported classes can be built but not called.
"""

from __future__ import annotations

import traceback

try:
    from componentize_py_types import Err
    from wit_world.imports import types as wit
except ImportError:  # natively: no bindings
    Err = wit = None

from . import (
    Partition,
    Column,
    OperatorError,
    Params,
    configure_combiner,
    configure_transform,
    run_fold,
    run_transform,
)

_VALUE_TYPES = {}
_MONOIDS = {}
if wit is not None:
    _VALUE_TYPES = {
        "bytes": wit.ValueType.BYTES,
        "text": wit.ValueType.TEXT,
        "i64": wit.ValueType.I64,
        "f64": wit.ValueType.F64,
    }
    _MONOIDS = {
        "sum-i64": wit.Monoid.SUM_I64,
        "min-i64": wit.Monoid.MIN_I64,
        "max-i64": wit.Monoid.MAX_I64,
        "sum-f64": wit.Monoid.SUM_F64,
    }
_MONOID_NAMES = {v: k for k, v in _MONOIDS.items()}


def _info(cls) -> "wit.OperatorInfo":
    info = cls.info()
    return wit.OperatorInfo(
        name=info.name,
        description=info.description,
        params=[(k, v) for k, v in info.params],
        key_type=_VALUE_TYPES[info.key_type] if info.key_type else None,
        value_type=_VALUE_TYPES[info.value_type] if info.value_type else None,
        monoid=_MONOIDS[info.monoid] if info.monoid else None,
    )


def _err(e: BaseException) -> Err:
    """An exception as the WIT `operator-error`. Exceptions other than OperatorError (bugs in
    the operator) carry their type and the last frame, instead of trapping the instance."""
    if isinstance(e, OperatorError):
        return Err(wit.OperatorError(message=e.message, record_index=e.record_index))
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    index = getattr(e, "record_index", None)
    return Err(wit.OperatorError(message=f"{type(e).__name__}: {e}{where}", record_index=index))


def _not_configured() -> Err:
    return Err(wit.OperatorError(message="operator called before configure", record_index=None))


def _column(c: "wit.Column") -> Column:
    return Column(c.data, c.offsets)


def _wit_column(c: Column) -> "wit.Column":
    return wit.Column(data=c.data, offsets=c.offsets)


def export_transform(cls):
    """The class componentize-py instantiates for the `transform` export."""

    class Transform:
        op = None
        combine = None

        def describe(self):
            return _info(cls)

        def configure(self, params, output_combine):
            try:
                Transform.op = configure_transform(cls, Params(params))
            except Exception as e:
                raise _err(e) from None
            Transform.combine = (
                _MONOID_NAMES.get(output_combine) if output_combine is not None else None
            )

        def process(self, input):
            op = Transform.op
            if op is None:
                raise _not_configured()
            batch = Partition(
                _column(input.keys) if input.keys is not None else None,
                _column(input.values),
                input.timestamps,
            )
            try:
                out = run_transform(op, batch, Transform.combine)
            except Exception as e:
                raise _err(e) from None
            return wit.Batch(
                keys=_wit_column(out.keys) if out.keys is not None else None,
                values=_wit_column(out.values),
                timestamps=out.timestamps,
            )

    return Transform


def export_combiner(cls):
    """The class componentize-py instantiates for the `combiner` export."""

    class Combiner:
        op = None

        def describe(self):
            return _info(cls)

        def configure(self, params):
            try:
                Combiner.op = configure_combiner(cls, Params(params))
            except Exception as e:
                raise _err(e) from None

        def fold(self, accumulators, targets, values):
            op = Combiner.op
            if op is None:
                raise _not_configured()
            try:
                out = run_fold(op, _column(accumulators), targets, _column(values))
            except Exception as e:
                raise _err(e) from None
            return _wit_column(out)

    return Combiner
