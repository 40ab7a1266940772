"""The model catalog: which model an alert is about, who owns it, where its dashboard is.

Entries come from the config file's `models:` and from `models_file:`. The file must be valid at start;
afterwards it is re-read whenever its modification time, size or inode changes (checked with one
stat() per lookup, so the very next alert sees an edit), and a broken edit keeps the last good entries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from receiver.config import ModelEntry

log = logging.getLogger(__name__)
_ENTRIES = TypeAdapter(list[ModelEntry])
_Signature = tuple[int, int, int]  # (mtime_ns, size, inode): an edit within the mtime tick still shows


def load_models_file(path: Path) -> list[ModelEntry]:
    """Read a models file: a YAML list of entries, or a mapping with a `models:` list."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read models file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) <= {"models"}:
        data = data.get("models")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of models, or a mapping with only a `models:` list")
    return _ENTRIES.validate_python(data)


class ModelCatalog:
    """Looks up catalog entries by the model (and model version) labels of an alert."""

    def __init__(
        self,
        models: list[ModelEntry],
        *,
        models_file: Path | None = None,
        model_label: str = "model",
        version_label: str = "model_version",
    ) -> None:
        self.model_label = model_label
        self.version_label = version_label
        self._static = list(models)
        self._file = models_file
        self._file_seen: _Signature | str | None = None  # what the last check saw, so each change logs once
        self._from_file: list[ModelEntry] = []
        self._index: dict[tuple[str, str | None], ModelEntry] = {}
        if models_file is not None:  # a broken file at start is a config error, like a broken config file
            try:
                self._file_seen = _signature(models_file)
            except OSError as exc:
                raise ValueError(f"cannot read models file {models_file}: {exc.strerror}") from None
            self._from_file = load_models_file(models_file)
        self._reindex()

    @property
    def entries(self) -> list[ModelEntry]:
        """Every entry: the config file's first, then the models file's (as of now)."""
        self.reload_if_changed()
        return self._static + self._from_file

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Re-read models_file when it changed; keep the last good entries if it is broken or gone."""
        if self._file is None:
            return False
        try:
            seen: _Signature | str = _signature(self._file)
        except OSError as exc:
            if self._file_seen != "unreadable":
                log.warning("models_file %s is unreadable, keeping the last catalog: %s", self._file, exc.strerror)
            self._file_seen = "unreadable"
            return False
        if seen == self._file_seen and not force:
            return False
        self._file_seen = seen
        try:
            self._from_file = load_models_file(self._file)
        except (ValueError, ValidationError) as exc:
            log.error("models_file %s is invalid, keeping the previous catalog: %s", self._file, exc)
            return False
        self._reindex()
        log.info("loaded %d models from %s", len(self._from_file), self._file)
        return True

    def _reindex(self) -> None:
        """(name, version) -> first such entry; (name, None) -> the version-less entry, else the first."""
        entries = self._static + self._from_file
        index: dict[tuple[str, str | None], ModelEntry] = {}
        for entry in entries:
            index.setdefault((entry.name, entry.version), entry)
        for entry in entries:  # fallback for other versions, after every version-less entry had its turn
            index.setdefault((entry.name, None), entry)
        self._index = index

    def lookup(self, labels: Mapping[str, str], *, reload: bool = True) -> ModelEntry | None:
        """The entry for the alert's model: exact version first, then any entry of that name.

        `reload=False` skips the models_file check: ingest checks once per payload, not per alert.
        """
        if reload:
            self.reload_if_changed()
        name = labels.get(self.model_label)
        if not name:
            return None
        version = labels.get(self.version_label)
        return self._index.get((name, version)) or self._index.get((name, None))


def _signature(path: Path) -> _Signature:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)
