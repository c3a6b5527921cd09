"""kombu's filesystem transport, made safe against what a full disk or a stray file leaves in the queue folder.

Two changes to kombu's Channel, nothing else: a message is written to a hidden temporary name and renamed into
place, so a failed write (disk full) never leaves a truncated `.msg` for a worker to read; and a message file
that cannot be decoded is moved to `rejected/` beside the queue folder and logged by name, where kombu would
raise and stop the worker. The job it carried stays queued in the database, so the reconciler sends it again.

Celery selects it with `broker_transport = "models.broker_files:Transport"` (see `models.broker`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

import structlog
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = structlog.get_logger()

REJECTED = "rejected"
PARTIAL = ".partial"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: the file appears under its final name whole, or not at all."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}{PARTIAL}")  # never matches `*.<queue>.msg`
        try:
            with open(partial, "xb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, final)
        except OSError as exc:
            Path(partial).unlink(missing_ok=True)
            raise ChannelError(f"Cannot add file {final!r} to directory: {exc}") from exc

    def _get(self, queue):
        """Take the oldest message of `queue`; a file that is not a message is set aside and the next one tried."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = Path(self.processed_folder) / name
            try:
                # a rename in the broker folder is atomic: of several workers, exactly one takes the file
                os.replace(os.path.join(self.data_folder_in, name), taken)
            except OSError:  # taken by another worker meanwhile
                continue
            try:
                payload = taken.read_bytes()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {str(taken)!r} from queue.") from exc
            try:
                message = loads(bytes_to_str(payload))
                self.Message(message, channel=self)  # what the consumer will build: properties, delivery tag, body
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, it is not a message
                self._reject(taken, reason=f"{type(exc).__name__}: {exc}", size=len(payload))
                continue
            if not self.store_processed:
                taken.unlink(missing_ok=True)
            return message
        raise Empty()

    def _reject(self, path: Path, *, reason: str, size: int) -> None:
        folder = Path(self.data_folder_in).parent / REJECTED
        folder.mkdir(exist_ok=True)
        try:
            os.replace(path, folder / path.name)
            kept = str(folder / path.name)
        except OSError as exc:  # cannot keep it: drop it rather than read it again forever
            path.unlink(missing_ok=True)
            kept = f"not kept ({type(exc).__name__})"
        log.error("broker message rejected", file=path.name, bytes=size, reason=reason[:200], moved_to=kept)


class Transport(filesystem.Transport):
    Channel = Channel
