"""The spool: received instances as files named by us (a random UUID), written durably before acknowledgment."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def write(self, data: bytes) -> tuple[str, int]:
        """Write `data` to a temporary file, fsync, rename it to its final name, fsync the folders.
        Returns the path relative to the spool root and the size. On any error nothing is left behind."""
        name = uuid.uuid4().hex
        part = self.tmp / f"{name}.part"
        final_dir = self.root / name[:2]
        final = final_dir / f"{name}.dcm"
        try:
            with open(part, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            final_dir.mkdir(exist_ok=True)
            os.replace(part, final)
            _fsync_dir(final_dir)
            _fsync_dir(self.root)
        except BaseException:
            part.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        return f"{name[:2]}/{name}.dcm", len(data)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)

    def stored_files(self) -> set[str]:
        """Every complete spool file, as the relative path the database records."""
        return {p.relative_to(self.root).as_posix() for p in self.root.glob("??/*.dcm")}

    def clean_temporary(self) -> int:
        """Remove partial files a killed listener left behind (they were never acknowledged)."""
        removed = 0
        for part in self.tmp.glob("*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
