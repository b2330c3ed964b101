"""``plait keys`` and the runtime directory it writes into."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plait.cluster._rpc_keys import load
from plait.supervisor import cli
from plait.supervisor._paths import UnsafeRunDir, resolve_run_dir, runtime_dir


def test_the_run_dir_follows_the_documented_order(tmp_path: Path) -> None:
    env = {"PLAIT_RUN_DIR": "/a", "XDG_RUNTIME_DIR": "/b", "TMPDIR": "/c"}
    assert resolve_run_dir("n", "/x", env) == Path("/x")
    assert resolve_run_dir("n", None, env) == Path("/a")
    del env["PLAIT_RUN_DIR"]
    assert resolve_run_dir("n", None, env) == Path("/b/plait/n")
    del env["XDG_RUNTIME_DIR"]
    assert resolve_run_dir("n", None, env) == Path(f"/c/plait-{os.getuid()}/n")


def test_the_run_dir_is_created_private(tmp_path: Path) -> None:
    path = runtime_dir("x", str(tmp_path / "run"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_run_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    with pytest.raises(UnsafeRunDir, match="0700"):
        runtime_dir("x", str(open_dir))


def test_keys_are_written_private_and_load_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert cli.main(["keys", "--run-dir", str(run_dir)]) == 0
    key_file = run_dir / "bus.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = load(key_file)
    assert keys.public.decode() in capsys.readouterr().out
    assert cli.main(["keys", "--run-dir", str(run_dir), "--show"]) == 0
    assert capsys.readouterr().out.strip() == keys.public.decode()


def test_existing_keys_are_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.key"
    assert cli.main(["keys", "-o", str(out)]) == 0
    first = load(out).public
    assert cli.main(["keys", "-o", str(out)]) == cli.EXIT_USAGE
    assert "--force" in capsys.readouterr().err
    assert load(out).public == first
    assert cli.main(["keys", "-o", str(out), "--force"]) == 0
    assert load(out).public != first


def test_showing_a_missing_key_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "-o", str(tmp_path / "none"), "--show"]) == cli.EXIT_USAGE
    assert "none" in capsys.readouterr().err
