"""Files of the audio resource on disk: converted messages where FreeSWITCH reads them, and uploads
waiting for the worker's conversion (in a private subdirectory of the same directory). Both are
named by the audio's id only and written atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from core.audio.errors import InvalidAudioId


class AudioStore:
    """Converted messages on disk as ``<root>/<audio_id>.wav``, where FreeSWITCH reads them."""

    prefix, suffix, mode = "", ".wav", 0o644

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root = Path(root_dir)

    def path_for(self, audio_id: str | uuid.UUID) -> Path:
        return self.root / f"{self.prefix}{canonical_id(audio_id)}{self.suffix}"

    def save(self, audio_id: str | uuid.UUID, data: bytes) -> Path:
        """Write atomically (temp file in the same directory, fsync, rename) with ``mode``."""
        path = self.path_for(audio_id)
        atomic_write(path, data, self.mode)
        return path

    def delete(self, audio_id: str | uuid.UUID) -> bool:
        """Remove the file; True if it existed."""
        try:
            self.path_for(audio_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, audio_id: str | uuid.UUID) -> bool:
        return self.path_for(audio_id).is_file()


class PendingUploads(AudioStore):
    """Uploads waiting for the worker, as ``<root>/audio-<audio_id>.upload``, mode 0600 (readable by
    the web and the worker's user only, never played: FreeSWITCH is only ever given ``<id>.wav``)."""

    prefix, suffix, mode = "audio-", ".upload", 0o600

    def read(self, audio_id: str | uuid.UUID) -> bytes | None:
        try:
            return self.path_for(audio_id).read_bytes()
        except FileNotFoundError:
            return None


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, chmod, rename, fsync the directory."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def canonical_id(audio_id: str | uuid.UUID) -> str:
    if isinstance(audio_id, uuid.UUID):
        return str(audio_id)
    if not isinstance(audio_id, str) or len(audio_id) != 36:
        raise InvalidAudioId("audio id must be a canonical UUID string")
    try:
        canonical = str(uuid.UUID(audio_id))
    except ValueError:
        raise InvalidAudioId("audio id must be a canonical UUID string") from None
    if canonical != audio_id:
        raise InvalidAudioId("audio id must be a canonical (lower-case, hyphenated) UUID string")
    return canonical


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
