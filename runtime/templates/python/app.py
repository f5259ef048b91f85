"""`{{name}}`: a flatMap operator emitting (word, 1) for each word of a line, lowercased.
Change `record` to make it yours; `python3 -m unittest` runs test_app.py natively."""

from spate_guest import Info, Transform, ValueType
from spate_guest.export import export_transform
from spate_guest.text import lowercase


class Operator(Transform):
    @staticmethod
    def info():
        return Info(
            name="{{name}}",
            description="(word, 1) for each word of a line",
            params=[("lowercase", "lowercase words first (default true)")],
            key_type=ValueType.TEXT,
            value_type=ValueType.I64,
        )

    @classmethod
    def configure(cls, params):
        op = cls()
        op.lowercase = params.bool("lowercase", True)
        return op

    def record(self, record, out):
        for word in record.value_str().split():
            # spate_guest.text.lowercase is Rust's str::to_lowercase (str.lower differs a little).
            out.emit(lowercase(word) if self.lowercase else word, 1)


# componentize-py looks for a binding named after the world's export.
Transform = export_transform(Operator)
