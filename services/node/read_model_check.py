"""Do the read models on disk belong to the log they are about to follow? Checked at start,
before a node opens them (docs/architecture.md, "Read models and their log").

Read models are a cache of one log: their checkpoints say how much of it they applied, and
their log_source row which log it was (the log's id and epoch, LogIdentity). Served over
any other log, they show jobs the log does not hold, and the writes the API acknowledges
never become visible. So at start:

1. a log file that is missing while read models applied events of it, or a log file of
   0 bytes: refused (DataFileError) before the log is opened, since opening would make
   a new log in its place;
2. read models with nothing applied fit any log;
3. read models of another log (another id), or whose tables another jobledger version
   wrote (a table of schema.sql missing or defined otherwise): removed, with a warning,
   and rebuilt;
4. a log that holds no events while the read models applied some: refused, since the
   log looks lost;
5. read models that applied more of a partition than this log holds: refused if they
   record this log's id (it lost events: an older copy restored), rebuilt if they record
   none (written before identities: nothing says they are this log's);
6. otherwise kept; the log's identity is recorded (adopted by a file from before).
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from jobledger.projections.store import ReadModelStore
from jobledger.projections.store_file import OnDisk, discard_if_crashed, read_on_disk, remove_db
from jobledger.services.log.protocol import DataFileError, LogBackend, LogIdentity
from jobledger.services.runtime.projector import TOPIC_OF_MODEL
from jobledger.services.runtime.server_log import note

log = logging.getLogger("jobledger.node")
Ends = Mapping[str, Mapping[int, int]]  # topic -> partition -> end offset


class Verdict(enum.Enum):
    KEEP = "keep"
    REBUILD = "rebuild"


def read_models_on_disk(views: Path) -> OnDisk | None:
    """What the read models at views say of their log (None: there are none), once a file
    an OS crash may have damaged is removed (store_file.py)."""
    discard_if_crashed(views)
    return read_on_disk(views)


def refuse_a_lost_log(db: Path, views: Path, on_disk: OnDisk | None) -> None:
    """Before a SQLite log is opened (which creates a missing file, or a new log inside an
    empty one): refuse a log file that is missing while read models say it held events,
    and a log file of 0 bytes, which jobledger never leaves (its header is written as the
    file is created): it was truncated or overwritten."""
    applied = 0 if on_disk is None else on_disk.applied
    if not db.exists() and applied:
        raise DataFileError(f"the log {db} is missing, but the read models {views} have "
                            f"applied {applied:,} events of it: {_what_to_do(views)}")
    wal = Path(f"{db}-wal")
    if db.exists() and db.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size):
        also = f"; the read models {views} have applied {applied:,} events of it" if applied else ""
        raise DataFileError(
            f"the log {db} is an empty file (0 bytes), which a jobledger log never is: it was "
            f"truncated or overwritten{also}. Restore it from a backup, or delete it"
            f"{f' and {views}' if on_disk else ''} to start a new, empty log")


def judge(views: Path, on_disk: OnDisk | None, identity: LogIdentity | None,
          ends: Ends) -> tuple[Verdict, str]:
    """Keep or rebuild the read models at views (and why), or raise DataFileError; rules
    2-6 above. The refusal's message goes on from the log's name (fit_read_models)."""
    if on_disk is None or not on_disk.applied:
        return Verdict.KEEP, "nothing applied yet"
    if on_disk.stale_tables:
        return Verdict.REBUILD, ("another jobledger version wrote them (its tables "
                                 f"{', '.join(on_disk.stale_tables)} differ from this one's)")
    source = None if on_disk.source is None else LogIdentity(*on_disk.source)
    if source is not None and identity is not None and source.log_id != identity.log_id:
        return Verdict.REBUILD, (f"they were folded from another log (log id {source.log_id}, "
                                 f"this one's is {identity.log_id})")
    if not sum(end for parts in ends.values() for end in parts.values()):
        raise DataFileError(f"holds no events, but the read models {views} have applied "
                            f"{on_disk.applied:,} events of it")
    beyond = _beyond_the_end(on_disk, ends)
    if beyond and source is not None:
        raise DataFileError(f"ends before what the read models {views} applied ({beyond}): "
                            "it lost events, as an older copy restored over it would")
    if beyond:
        return Verdict.REBUILD, (f"they applied more than the log holds ({beyond}) and record "
                                 "no log id (written before jobledger recorded one)")
    return Verdict.KEEP, "they are this log's"


def _beyond_the_end(on_disk: OnDisk, ends: Ends) -> str:
    """The first partition whose checkpoint lies beyond the log's end, said for people;
    '' if none does."""
    for model, checkpoints in sorted(on_disk.checkpoints.items()):
        topic = TOPIC_OF_MODEL.get(model, model)
        for partition, offset in sorted(checkpoints.items()):
            end = ends.get(topic, {}).get(partition, 0)
            if offset > end:
                return (f"{topic} partition {partition}: {offset:,} events applied, "
                        f"{end:,} in the log")
    return ""


async def fit_read_models(views: Path, on_disk: OnDisk | None, log_name: str,
                          backend: LogBackend) -> None:
    """Judge the read models at views against the log (log_name names it for people):
    remove them to be rebuilt, with a warning, or raise DataFileError naming both and
    what to do. The log's ends are asked for only when some events are applied."""
    ends: dict[str, dict[int, int]] = {}
    if on_disk is not None and on_disk.applied:
        for topic in TOPIC_OF_MODEL.values():
            ends[topic] = await backend.topic(topic).end_offsets()
    try:
        verdict, why = judge(views, on_disk, await backend.identity(), ends)
    except DataFileError as refused:
        raise DataFileError(f"{log_name} {refused}: {_what_to_do(views)}") from None
    if verdict is Verdict.REBUILD:
        warn(f"rebuilding the read models {views} from {log_name}: {why}")
        remove_db(views)


async def record_log_source(store: ReadModelStore, backend: LogBackend) -> None:
    """Record the log's identity in the read models (kept, adopted or new alike)."""
    identity = await backend.identity()
    if identity is not None:
        await store.record_source(identity.log_id, identity.epoch)


def _what_to_do(views: Path) -> str:
    return (f"restore the log from a backup (the newest copy), or delete {views} (and its "
            "-wal and -shm) to rebuild the read models from the log as it is")


def warn(message: str) -> None:
    """A warning that must be seen: logged, and printed on stderr if warnings are not."""
    note(log, logging.WARNING, "read_models.rebuilt", message)
    if not log.isEnabledFor(logging.WARNING):
        print(f"jobledger: warning: {message}", file=sys.stderr)
