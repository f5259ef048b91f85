"""Native tests of the Python guest SDK and its examples: `python3 -m unittest discover -s
guest-sdk/python/tests` (plain CPython, no Wasm)."""

import importlib.util
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from spate_guest import (  # noqa: E402
    Partition, PartitionBuilder, Column, Monoid, OperatorError, Params, configure_transform,
    reduce_by_key, run_fold, run_transform, transform_pairs, wrap_i64, encode_i64, decode_i64,
)


def load_example(name):
    path = os.path.join(os.path.dirname(HERE), "examples", name, "app.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tokenize = load_example("tokenize")
summing = load_example("sum")


def words(params, lines, combine=None):
    return transform_pairs(tokenize.Tokenize, params, lines, combine)


class TokenizeTest(unittest.TestCase):
    def test_splits_on_any_whitespace(self):
        self.assertEqual([w for w, _ in words([], ["a  b\tc", "", "  d\u00a0e\r"])],
                         ["a", "b", "c", "d", "e"])

    def test_control_characters_stay_in_words_like_rust(self):
        line = "ab\x01cd e\x1cf \x0b g"
        self.assertEqual([w for w, _ in words([], [line])], ["ab\x01cd", "e\x1cf", "g"])

    def test_keeps_case_and_punctuation_by_default(self):
        self.assertEqual([w for w, _ in words([], ["Hello, World!"])], ["Hello,", "World!"])

    def test_lowercases_and_strips_when_asked(self):
        params = [("lowercase", "true"), ("strip-punctuation", "true")]
        self.assertEqual([w for w, _ in words(params, ["Hello, World! -- «Ça» va?", "don't"])],
                         ["hello", "world", "ça", "va", "don't"])

    def test_pre_combines_counts_when_the_host_asks(self):
        self.assertEqual(words([], ["a b a", "b a c"], Monoid.SUM_I64),
                         [("a", 3), ("b", 2), ("c", 1)])

    def test_rejects_unknown_and_malformed_parameters(self):
        with self.assertRaisesRegex(OperatorError, "unknown parameter 'lowercse'"):
            words([("lowercse", "true")], [])
        with self.assertRaisesRegex(OperatorError, "must be true or false"):
            words([("lowercase", "yes")], [])

    def test_invalid_utf8_names_the_record(self):
        op = configure_transform(tokenize.Tokenize, Params())
        batch = Partition(None, Column.from_values([b"ok", b"\xff\xfe"]))
        with self.assertRaises(OperatorError) as e:
            run_transform(op, batch)
        self.assertEqual(e.exception.record_index, 1)


class SdkTest(unittest.TestCase):
    def test_builder_mixes_keyed_and_unkeyed_records(self):
        out = PartitionBuilder()
        out.push_value(b"plain")
        out.emit(b"word", 3)
        out.push_pair(b"k", b"v")
        batch = out.finish()
        self.assertEqual([r.key for r in batch.records()], [b"", b"word", b"k"])
        self.assertEqual(decode_i64(batch.record(1).value), 3)

    def test_stamps_follow_the_records(self):
        out = PartitionBuilder()
        out.emit(b"a", 1)
        out.emit(b"b", 1)
        out.stamp(5)
        out.stamp(6)
        out.emit(b"c", 1)
        out.stamp(7)
        self.assertEqual(out.finish().timestamps, [5, 5, 7])

    def test_combining_builder_keeps_other_values(self):
        out = PartitionBuilder(Monoid.SUM_I64)
        out.emit_all([b"a", b"b", b"a"], 1)
        out.emit(b"a", "text is not combined")
        out.emit(b"c", 10)
        recs = [(r.key, r.value) for r in out.finish().records()]
        self.assertEqual(recs, [(b"a", encode_i64(2)), (b"b", encode_i64(1)), (b"c", encode_i64(10)),
                                (b"a", b"text is not combined")])

    def test_params(self):
        p = Params([("lowercase", "true"), ("min", "x"), ("n", " -5 ")])
        self.assertTrue(p.bool("lowercase", False))
        self.assertEqual(p.i64("n", 0), -5)
        with self.assertRaisesRegex(OperatorError, "parameter 'min' must be an integer, got 'x'"):
            p.i64("min", 0)
        with self.assertRaisesRegex(OperatorError, r"unknown parameter 'min' \(known: lowercase, n\)"):
            p.check_known([("lowercase", ""), ("n", "")])


class FailingTransformTest(unittest.TestCase):
    def test_a_bug_in_an_operator_names_the_record(self):
        from spate_guest import Transform

        class Picky(Transform):
            @staticmethod
            def info():
                from spate_guest import Info
                return Info(name="picky", description="fails on b")

            def record(self, record, out):
                if record.value == b"b":
                    raise ValueError("no b")
                out.push_record(record)

        with self.assertRaises(ValueError) as e:
            run_transform(Picky(), Partition.from_lines(["a", "b"]))
        self.assertEqual(e.exception.record_index, 1)


class SumTest(unittest.TestCase):
    def test_sums_per_key_in_first_seen_order(self):
        self.assertEqual(reduce_by_key(summing.Sum, [], [("a", 1), ("b", 5), ("a", 2), ("a", -1)]),
                         [("a", 2), ("b", 5)])

    def test_wraps_on_overflow(self):
        self.assertEqual(reduce_by_key(summing.Sum, [], [("a", 2**63 - 1), ("a", 1)]), [("a", -(2**63))])
        self.assertEqual(wrap_i64(2**64 + 3), 3)

    def test_refuses_parameters(self):
        with self.assertRaisesRegex(OperatorError, "takes no parameters"):
            reduce_by_key(summing.Sum, [("x", "1")], [])

    def test_fold_errors_name_the_value(self):
        op = summing.Sum()
        accs = Column.from_values([encode_i64(1)])
        with self.assertRaises(OperatorError) as e:
            run_fold(op, accs, [0, 3], Column.from_values([encode_i64(1), encode_i64(2)]))
        self.assertEqual((e.exception.message, e.exception.record_index),
                         ("target 3 is out of range (1 accumulators)", 1))
        with self.assertRaises(OperatorError) as e:
            run_fold(op, accs, [0], Column.from_values([b"abc"]))
        self.assertIn("3 bytes", e.exception.message)


if __name__ == "__main__":
    unittest.main()
