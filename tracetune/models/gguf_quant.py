"""A GGUF model re-quantized for llama.cpp's faster CPU kernels, made once into the data home.

llama.cpp's matrix-matrix kernels (tinyBLAS) cover Q8_0 and Q4_0 but not Q4_1: on a Q4_1 file every prompt token and
every row of a batch is a separate dot product. Q8_0 (8 bits per 32-weight block where Q4_1 has 4) re-rounds the
Q4_1 values, which are the weights the adapters were trained on (transformers de-quantizes them), by a small part
of Q4_1's own step, while prefill and batches get the matrix kernels; ``bench/serve_accuracy.py`` checks that the
tuned model's held-out accuracy holds. Tensors of other types are copied as they are, metadata too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracetune.models.registry import ModelSpec

log = logging.getLogger(__name__)

REQUANTIZED = {"Q4_1": "Q8_0"}  # source type → the type it is re-quantized to
_FILE_TYPE = {"Q8_0": 7}  # llama_ftype of the result (general.file_type)


def requantized_path(home: Path, spec: ModelSpec) -> Path:
    assert spec.gguf_file is not None
    return Path(home) / "models" / spec.id / "llamacpp" / (Path(spec.gguf_file).stem + ".Q8_0.gguf")


def llamacpp_weights(home: Path, spec: ModelSpec) -> Path:
    """The GGUF llama.cpp should load for ``spec``: a Q8_0 copy of a Q4_1 file (written once into the home, ~4 s
    for SmolLM2), else the file itself."""
    import gguf

    source = spec.weights_path
    reader = gguf.GGUFReader(str(source))
    if not any(t.tensor_type.name in REQUANTIZED for t in reader.tensors):
        return source
    out = requantized_path(home, spec)
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    log.info("re-quantizing %s to Q8_0 for llama.cpp (once) into %s", source.name, out)
    _write(reader, out)
    return out


@contextlib.contextmanager
def gguf_written(out: Path, arch: str) -> Iterator[Any]:
    """A ``gguf.GGUFWriter`` whose file appears at ``out`` whole or not at all: the body adds keys and tensors; on
    success it is written to a temporary file beside ``out`` and moved there, on failure nothing is left."""
    import gguf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gguf-", suffix=".gguf", dir=out.parent)
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(reader: Any, out: Path) -> None:
    import gguf
    from gguf.quants import dequantize, quantize

    fields = reader.fields
    with gguf_written(out, str(fields["general.architecture"].contents())) as writer:
        for name, field in fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue
            if name == "general.file_type":
                writer.add_uint32(name, _FILE_TYPE["Q8_0"])
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(name, field.contents(), kind, sub_type=sub)
        for tensor in reader.tensors:
            target = REQUANTIZED.get(tensor.tensor_type.name)
            if target is None:
                writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
                continue
            qtype = gguf.GGMLQuantizationType[target]
            data = quantize(dequantize(tensor.data, tensor.tensor_type), qtype)
            writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=qtype)
