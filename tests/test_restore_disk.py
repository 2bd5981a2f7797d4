"""`restore` onto a disk without room: refused before anything is written when the disk has
less free space than the backup's files take, and a disk that fills up during the copy is
named as the restore's disk, nothing left behind. Before, the restore began anyway, and the
copy's error named the backup's own file ("No space left on device: /backup/.../
semtrace.db."), as if the backup were at fault."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from test_backup import _init

from appliance.cli import main


def test_restore_onto_a_full_disk_is_one_sentence_and_leaves_nothing(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = _init(tmp_path, passphrase_file)
    main(["backup", str(tmp_path / "copy"), *args])
    capsys.readouterr()
    target = tmp_path / "restored"
    restore = ["restore", str(tmp_path / "copy"), "--data-dir", str(target),
               "--passphrase-file", str(passphrase_file)]

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 4096))
    with pytest.raises(SystemExit) as exc:
        main(restore)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith(f"semtrace: {target} is on a disk with 0 MiB free; the restore "
                          "needs about 1 MiB. Nothing was restored."), err
    assert not target.exists()
    monkeypatch.undo()

    copy = shutil.copyfile

    def fills_up(src: Path, dst: Path) -> None:  # the disk fills up at semtrace.db
        if Path(src).name != "semtrace.db":
            copy(src, dst)
            return
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr("appliance.restore.shutil.copyfile", fills_up)
    with pytest.raises(SystemExit) as exc:
        main(restore)
    err = capsys.readouterr().err
    assert exc.value.code == 1, err
    assert err.strip() == (f"semtrace: The restore into {target} failed: its disk is full; "
                           "nothing was left of it."), err
    assert not target.exists()
