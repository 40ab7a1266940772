"""The model catalog: which model an alert is about, who owns it, where its dashboard is.

Entries come from the config file's `models:` and from `models_file:`, which is re-read when its
modification time changes, so owners can be updated without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from receiver.config import ModelEntry, read_config_file

log = logging.getLogger(__name__)
_ENTRIES = TypeAdapter(list[ModelEntry])
_STAT_EVERY = 1.0  # seconds between checks of models_file, so lookups stay off the disk


def load_models_file(path: Path) -> list[ModelEntry]:
    """Read a models file: a YAML list of entries, or a mapping with a `models:` list."""
    data = read_config_file(path)
    raw = data.get("models", []) if isinstance(data, dict) else data
    return _ENTRIES.validate_python(raw)


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
        self._file_mtime: float | None = None
        self._next_stat = 0.0
        self._from_file: list[ModelEntry] = []
        self._index: dict[tuple[str, str | None], ModelEntry] = {}
        self._reindex()
        self.reload_if_changed(force=True)

    @property
    def entries(self) -> list[ModelEntry]:
        return self._static + self._from_file

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Re-read models_file when it changed; keep the last good entries if it is broken."""
        if self._file is None or (not force and time.monotonic() < self._next_stat):
            return False
        self._next_stat = time.monotonic() + _STAT_EVERY
        try:
            mtime = self._file.stat().st_mtime
        except OSError as exc:
            log.warning("models_file %s is not readable: %s", self._file, exc.strerror)
            return False
        if mtime == self._file_mtime:
            return False
        try:
            self._from_file = load_models_file(self._file)
        except (ValueError, ValidationError) as exc:
            log.error("models_file %s is invalid, keeping the previous catalog: %s", self._file, exc)
            return False
        self._file_mtime = mtime
        self._reindex()
        log.info("loaded %d models from %s", len(self._from_file), self._file)
        return True

    def _reindex(self) -> None:
        index: dict[tuple[str, str | None], ModelEntry] = {}
        for entry in self.entries:
            index.setdefault((entry.name, entry.version), entry)
            index.setdefault((entry.name, None), entry)  # any version serves when none matches exactly
        self._index = index

    def lookup(self, labels: Mapping[str, str]) -> ModelEntry | None:
        """The entry for the alert's model: exact version first, then any entry of that name."""
        self.reload_if_changed()
        name = labels.get(self.model_label)
        if not name:
            return None
        version = labels.get(self.version_label)
        return self._index.get((name, version)) or self._index.get((name, None))
