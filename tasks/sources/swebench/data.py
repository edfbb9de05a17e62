"""SWE-bench instances and predictions: reading, checking, selecting."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATASET = "princeton-nlp/SWE-bench_Lite"
REQUIRED_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement", "version",
                   "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS")


class DatasetError(Exception):
    """The dataset or predictions cannot be read; the message says what to do."""


class InstanceError(Exception):
    """One instance cannot run; the message says why. The other instances go on."""


class InfraError(InstanceError):
    """The machinery failed, not the patch: an environment that does not build, a base image,
    a sandbox. ``cause`` is a short category for reports (``build: package``, ``base image``)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


# =========================================================================== instances


@dataclass
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    version: str
    test_patch: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    patch: str = ""
    """The gold patch (never shown to the model, never used for selection)."""
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        """Check one dataset row; raise InstanceError naming what is wrong."""
        if not isinstance(row, dict):
            raise InstanceError(f"the row is a {type(row).__name__}, not an object")
        missing = [f for f in REQUIRED_FIELDS if row.get(f) in (None, "")]
        if missing:
            raise InstanceError(f"the row lacks {', '.join(missing)} (SWE-bench rows have "
                                f"{', '.join(REQUIRED_FIELDS)})")
        for f in ("instance_id", "repo", "base_commit", "problem_statement", "test_patch"):
            if not isinstance(row[f], str):
                raise InstanceError(f"field {f} is a {type(row[f]).__name__}, not a string")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", row["repo"]):
            raise InstanceError(f"repo {row['repo']!r} is not owner/name")
        if not re.fullmatch(r"[0-9a-fA-F]{7,40}", row["base_commit"]):
            raise InstanceError(f"base_commit {row['base_commit']!r} is not a commit hash")
        if "diff --git" not in row["test_patch"] and "\n+++ " not in row["test_patch"]:
            raise InstanceError("test_patch is not a unified diff")
        tests = {}
        for f in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            value = row[f]
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise InstanceError(f"{f} is not a JSON-encoded list: {exc}") from None
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise InstanceError(f"{f} must be a list of test names")
            tests[f] = value
        if not tests["FAIL_TO_PASS"]:
            raise InstanceError("FAIL_TO_PASS is empty: nothing shows the issue fixed")
        version = row["version"]
        if isinstance(version, float):
            raise InstanceError(f"version {version!r} is a number, not a string (a JSON "
                                "export turned it into a float; 0.20 and 0.2 differ)")
        patch = row.get("patch") or ""
        return cls(instance_id=row["instance_id"], repo=row["repo"],
                   base_commit=row["base_commit"], problem_statement=row["problem_statement"],
                   version=str(version), test_patch=row["test_patch"],
                   fail_to_pass=tests["FAIL_TO_PASS"], pass_to_pass=tests["PASS_TO_PASS"],
                   patch=patch if isinstance(patch, str) else "",
                   environment_setup_commit=str(row.get("environment_setup_commit") or ""),
                   hints_text=str(row.get("hints_text") or ""),
                   created_at=str(row.get("created_at") or ""))

    def to_row(self) -> dict[str, Any]:
        """The official 12-field row (test lists JSON-encoded, as on Hugging Face)."""
        return {"repo": self.repo, "instance_id": self.instance_id,
                "base_commit": self.base_commit, "patch": self.patch,
                "test_patch": self.test_patch, "problem_statement": self.problem_statement,
                "hints_text": self.hints_text, "created_at": self.created_at,
                "version": self.version, "FAIL_TO_PASS": json.dumps(self.fail_to_pass),
                "PASS_TO_PASS": json.dumps(self.pass_to_pass),
                "environment_setup_commit": self.environment_setup_commit}


@dataclass
class BadRow:
    """A dataset row that is not an instance, kept so the report can name it."""

    instance_id: str
    error: str


def parse_rows(rows: list[Any]) -> list[Instance | BadRow]:
    out: list[Instance | BadRow] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        rid = row.get("instance_id") if isinstance(row, dict) else None
        rid = rid if isinstance(rid, str) and rid else f"row-{i + 1}"
        if isinstance(row, dict) and row.get("_error"):
            out.append(BadRow(rid, f"bad dataset row: {row['_error']}"))
            continue
        try:
            inst = Instance.from_row(row)
        except InstanceError as exc:
            out.append(BadRow(rid, f"bad dataset row: {exc}"))
            continue
        if inst.instance_id in seen:
            out.append(BadRow(f"{rid}#{i + 1}", f"bad dataset row: instance_id {rid} repeats"))
            continue
        seen.add(inst.instance_id)
        out.append(inst)
    return out


def load_dataset(source: str, split: str = "test") -> list[dict[str, Any]]:
    """Rows from a JSONL / JSON file, or a Hugging Face dataset name where the hub answers."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.exists():
        return _read_rows(path)
    if source.endswith((".jsonl", ".json")) or "/" not in source or source.startswith(
            (".", "/", "~")):
        raise DatasetError(f"dataset file {source} not found")
    return _hub_rows(source, split)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not JSON: {exc}") from None
        if isinstance(data, dict):
            data = list(data.values())
        if not isinstance(data, list):
            raise DatasetError(f"{path} must hold a list of instances")
        return data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n} is not JSON ({exc.msg}): a dataset file holds one "
                               "JSON object a line (JSON lines), or one JSON list") from None
    return rows


def _hub_rows(name: str, split: str) -> list[dict[str, Any]]:
    """A dataset from the Hugging Face hub: through ``datasets`` when installed, else the
    hub's rows API."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        datasets = None
    if datasets is not None:
        try:
            return [dict(r) for r in datasets.load_dataset(name, split=split)]
        except Exception as exc:  # noqa: BLE001 - the hub's errors are many
            raise DatasetError(f"cannot load {name} ({split}) from the Hugging Face hub: "
                               f"{exc}. Download it and pass the JSONL file instead.") from exc
    import httpx

    rows: list[dict[str, Any]] = []
    url = "https://datasets-server.huggingface.co/rows"
    try:
        while True:
            r = httpx.get(url, params={"dataset": name, "config": "default", "split": split,
                                       "offset": len(rows), "length": 100}, timeout=30)
            r.raise_for_status()
            data = r.json()
            page = [x["row"] for x in data.get("rows", [])]
            rows.extend(page)
            if not page or len(rows) >= int(data.get("num_rows_total", 0)):
                return rows
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise DatasetError(f"cannot load {name} ({split}) from the Hugging Face hub: {exc}. "
                           "Download it and pass the JSONL file with --dataset.") from exc


def select_instances(items: list[Instance | BadRow], ids: list[str] | None = None,
                     limit: int | None = None) -> list[Instance | BadRow]:
    """The instances named (ids or regular expressions), in dataset order, at most ``limit``."""
    if ids:
        wanted = [i for i in ids if i]
        exact = {i for i in wanted if re.fullmatch(r"[\w.\-#]+", i)}
        known = {x.instance_id for x in items}
        unknown = sorted(i for i in exact if i not in known)
        if unknown and not any(re.search(i, k) for i in unknown for k in known):
            raise DatasetError(f"no instances {', '.join(unknown)} in the dataset")
        items = [x for x in items if x.instance_id in exact
                 or any(re.fullmatch(p, x.instance_id) for p in wanted if p not in exact)]
    return items[:limit] if limit else items





PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")


def load_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """instance_id → prediction, from the official JSONL (or a JSON list / mapping), as
    strictly as the official loader: each needs ``instance_id``, ``model_name_or_path`` and
    ``model_patch`` (null or "" is an empty patch); a missing key, a line that is not JSON or
    an instance given twice is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"predictions file {path} not found")
    text = path.read_text()
    numbered: list[tuple[str, Any]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not JSON: {exc}") from None
        rows = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DatasetError(f"{path} must hold a list of predictions")
        numbered = [(f"prediction {i}", r) for i, r in enumerate(rows, 1)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {n} is not JSON ({exc.msg}); predictions are "
                                   "JSON lines") from None
    out: dict[str, dict[str, Any]] = {}
    for where, row in numbered:
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: {where} is a {type(row).__name__}, not an object")
        missing = [k for k in PREDICTION_KEYS if k not in row]
        if missing:
            raise DatasetError(f"{path}: {where} lacks {', '.join(missing)} (each prediction "
                               f"needs {', '.join(PREDICTION_KEYS)})")
        iid, patch = row["instance_id"], row["model_patch"]
        if not isinstance(iid, str) or not iid:
            raise DatasetError(f"{path}: {where}: instance_id is not a string")
        if patch is not None and not isinstance(patch, str):
            raise DatasetError(f"{path}: {where}: model_patch of {iid} is not a string")
        if iid in out:
            raise DatasetError(f"{path}: {where}: {iid} is predicted twice")
        out[iid] = {"instance_id": iid, "model_name_or_path": str(row["model_name_or_path"]),
                    "model_patch": patch or ""}
    return out
