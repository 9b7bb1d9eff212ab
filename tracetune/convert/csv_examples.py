"""A CSV file → dataset examples (LangSmith's ``upload_csv``): the ``input_keys`` columns become each example's
inputs, the ``output_keys`` columns its outputs. Every problem names the line (1 is the header) or the column."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from tracetune.errors import InvalidInput

MAX_FIELD_CHARS = 10_000_000  # one cell; csv's default (131072) refuses long prompts


def examples_from_csv(
    data: bytes, input_keys: Sequence[str], output_keys: Sequence[str]
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(inputs, outputs) per data row, in file order; ``InvalidInput`` (field ``file``, ``input_keys`` or
    ``output_keys``) on a file that is not UTF-8 CSV, a missing column or a row of the wrong width."""
    if not input_keys:
        raise InvalidInput("input_keys must name at least one column of the CSV", field="input_keys")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"the CSV is not UTF-8 text (line {line})", field="file") from None
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput("the CSV is empty: line 1 must name the columns", field="file")
        for keys, field in ((input_keys, "input_keys"), (output_keys, "output_keys")):
            for key in keys:
                if key not in header:
                    raise InvalidInput(
                        f"column {key!r} is not in the CSV header (line 1: {', '.join(header)})", field=field
                    )
        at = {name: i for i, name in enumerate(header)}
        out = []
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(header):
                raise InvalidInput(
                    f"line {reader.line_num} has {len(row)} values; the header (line 1) names {len(header)} columns",
                    field="file",
                )
            inputs = {k: row[at[k]] for k in input_keys}
            outputs = {k: row[at[k]] for k in output_keys} if output_keys else None
            out.append((inputs, outputs))
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV at line {reader.line_num}: {exc}", field="file") from None
    if not out:
        raise InvalidInput("the CSV has a header but no rows", field="file")
    return out
