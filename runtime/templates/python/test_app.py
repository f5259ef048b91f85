"""Native tests of the operator (plain CPython, no Wasm): `python3 -m unittest`."""

import sys
import unittest

sys.path.insert(0, "{{sdk}}")  # the Spate guest SDK this project was made with

from spate_guest import transform_pairs  # noqa: E402

from app import Operator  # noqa: E402


class OperatorTest(unittest.TestCase):
    def test_emits_one_per_word(self):
        out = transform_pairs(Operator, [], ["To be or", "NOT"])
        self.assertEqual(out, [("to", 1), ("be", 1), ("or", 1), ("not", 1)])

    def test_keeps_case_when_asked(self):
        out = transform_pairs(Operator, [("lowercase", "false")], ["To be"])
        self.assertEqual([word for word, _ in out], ["To", "be"])


if __name__ == "__main__":
    unittest.main()
