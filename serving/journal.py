"""Each writable collection's ingestion jobs on disk, beside its index (``INDEX_DIR/.jobs.json``).

A job's record lived only in the Collections replica's memory: when Serve replaced that replica (a crash, a lost
node), or the service was restarted, a client holding a job id got 404 and the job that was running was gone, its
documents taken up later by a new job under another id. With the records on disk the replica that starts next knows
every job its predecessor was given, and runs again under the same id those that were queued or running
(serving.jobs.JobQueue). The file is hidden so that a folder holding only it is still an empty index folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rag.store.files import replace_whole

log = logging.getLogger(__name__)

JOURNAL_FILE = ".jobs.json"


class Journal:
    def __init__(self, indexes: dict[str, str | Path]):
        """``indexes``: each writable collection's index folder."""
        self._paths = {name: Path(index) / JOURNAL_FILE for name, index in indexes.items()}

    def load(self) -> list[dict]:
        """Every collection's job records, oldest first. A file that cannot be read costs its collection's history
        only, with a warning: the folder is still the truth about which documents wait."""
        records = []
        for name, path in self._paths.items():
            try:
                kept = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as err:
                log.warning("%s: the collection's earlier jobs are not known (%s)", path, err)
                continue
            records += [r for r in kept if isinstance(r, dict) and r.get("collection") == name]
        return sorted(records, key=lambda r: str(r.get("created_at")))

    def save(self, collection: str, records: list[dict]) -> None:
        """The collection's job records, replaced whole (a reader sees the old file or the new one). A write that
        fails (a full disk) is logged, not raised: the job itself goes on, only its record would not outlive the
        replica."""
        path = self._paths[collection]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_whole(path, json.dumps(records))
        except OSError as err:
            log.warning("%s: the collection's job records were not written (%s)", path, err)
