"""A real small filesystem for the disk-full tests: a tmpfs of a few MB mounted for the test (the suite runs as
root on this project's machines), resized between runs as freeing space would. Where mounting is not
allowed, the same folder on the ordinary disk with a file-size limit (``RLIMIT_FSIZE``) on the process under
test: writes then fail with EFBIG instead of ENOSPC, which the code under test treats alike."""
from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path


class SmallDisk:
    def __init__(self, path: Path, mb: float):
        self.path = Path(path)
        self.path.mkdir(parents=True)
        self.mb = mb
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(mb * 1024)}k", "tmpfs", str(self.path)],
                                 capture_output=True)
        self.tmpfs = mounted.returncode == 0

    @property
    def kind(self) -> str:
        return "tmpfs" if self.tmpfs else "RLIMIT_FSIZE"

    def resize(self, mb: float) -> None:
        """More (or less) room, as freeing space on the disk gives."""
        self.mb = mb
        if self.tmpfs:
            subprocess.run(["mount", "-o", f"remount,size={int(mb * 1024)}k", str(self.path)], check=True)

    def preexec(self):
        """For ``subprocess``: nothing on a tmpfs; else the file-size limit (and SIGXFSZ ignored, so a write past
        it fails with EFBIG instead of killing the process)."""
        if self.tmpfs:
            return None
        limit = int(self.mb * 2**20)

        def limit_file_size():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return limit_file_size

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
