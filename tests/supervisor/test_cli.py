"""The ``plait`` command: configuration, app loading and exit codes."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.cluster.protocol import Protocol
from plait.supervisor import cli


@pytest.fixture
def app_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("plait_test_app")

    class Echo(Protocol):
        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    def setup(worker: object) -> type[Echo]:
        return Echo

    def broken_setup(worker: object) -> type[Echo]:
        raise RuntimeError("no database")

    module.Echo = Echo  # type: ignore[attr-defined]
    module.setup = setup  # type: ignore[attr-defined]
    module.broken_setup = broken_setup  # type: ignore[attr-defined]
    module.not_callable = 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_a_protocol_class_is_loaded_as_its_own_factory(app_module: types.ModuleType) -> None:
    assert cli.load_app("plait_test_app:Echo") is app_module.Echo


def test_a_setup_function_is_called_and_its_factory_returned(
    app_module: types.ModuleType,
) -> None:
    assert cli.load_app("plait_test_app:setup") is app_module.Echo


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "module:attr"),
        ("plait_missing_module_xyz:app", "cannot import"),
        ("plait_test_app:missing", "no attribute"),
        ("plait_test_app:not_callable", "not callable"),
        ("plait_test_app:broken_setup", "no database"),
    ],
)
def test_a_bad_app_is_refused_with_a_clear_reason(
    app_module: types.ModuleType, spec: str, message: str
) -> None:
    with pytest.raises(cli.AppLoadError, match=message):
        cli.load_app(spec)


def test_an_app_that_cannot_boot_exits_with_3(
    app_module: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "plait_test_app:missing"]) == cli.EXIT_BOOT
    assert "app cannot boot" in capsys.readouterr().err


def test_flags_win_over_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "plait.toml"
    path.write_text('app = "a:b"\nlisten = ["tcp:1"]\nname = "n"\nworkers = 4\n')
    args = cli._parser().parse_args(["run", "c:d", "--config", str(path)])
    config = cli.build_config(args)
    assert (config.app, config.listen, config.name) == ("c:d", ("tcp:1",), "n")
    assert config.extra == {"workers": 4}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app = [", "not valid TOML"),
        ("colour = 1", "unknown keys"),
        ('listen = "tcp:80"', "list of endpoint strings"),
        ("app = 3", "module:attr"),
    ],
)
def test_a_bad_config_file_exits_with_2(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plait.toml"
    path.write_text(text)
    assert cli.main(["run", "--config", str(path)]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_a_missing_config_file_exits_with_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--config", str(tmp_path / "none.toml")]) == cli.EXIT_USAGE
    assert "cannot read config" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
