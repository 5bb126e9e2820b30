"""The shipped unit file: `systemd-analyze verify` is silent and the exposure score is low."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "evcam.service"
EVCAM = ROOT / ".venv" / "bin" / "evcam"
MAX_EXPOSURE = 2.5
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing (CI=true: .ci/run installs systemd)")
        pytest.skip("systemd-analyze is not installed")
    return path


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's evcam (verify checks it exists)."""
    evcam = EVCAM if EVCAM.exists() else Path(shutil.which("evcam") or EVCAM)
    text = UNIT.read_text()
    assert "ExecStart=/opt/evcam/bin/evcam " in text
    path = tmp_path / "evcam.service"
    path.write_text(text.replace("ExecStart=/opt/evcam/bin/evcam ", f"ExecStart={evcam} "))
    return path


def test_unit_has_the_required_settings() -> None:
    """Type=notify in the foreground, restarts, a watchdog, an EnvironmentFile and a state dir."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/evcam/evcam.env",
        "StateDirectory=evcam",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start and "--foreground" in exec_start.group(1)
    assert "--broker" not in exec_start.group(1) and "--pidfile" not in exec_start.group(1)
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)


def test_verify_is_silent(analyze: str, unit: Path) -> None:
    """`systemd-analyze verify` exits 0 with nothing on stderr (it only warns on bad keys)."""
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_security_exposure_is_low(analyze: str, unit: Path) -> None:
    """`systemd-analyze security --offline=yes` rates the unit at most 2.5."""
    result = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout[-2000:] + result.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE
    assert result.returncode == 0


def test_environment_file_names_real_options() -> None:
    """Every EVCAM_* variable in the example environment file is one the command reads."""
    from evcam.cli import main

    names: set[str] = set()
    for param in main.params:
        envvar = param.envvar
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
        elif param.name:
            names.add(f"EVCAM_{param.name.upper()}")
    example = (ROOT / "systemd" / "evcam.env").read_text()
    used = set(re.findall(r"^(EVCAM_\w+)=", example, re.M))
    assert used and used <= names, used - names


def test_environment_file_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example environment file, loaded as systemd would, gives valid settings."""
    from click.testing import CliRunner

    from evcam import runner
    from evcam.cli import main

    env = dict(
        line.split("=", 1)
        for line in (ROOT / "systemd" / "evcam.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    seen = []
    monkeypatch.setattr(runner, "run", lambda settings: seen.append(settings) or 0)
    result = CliRunner().invoke(main, ["--foreground"], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.freq == 2.0 and settings.maxrate == "30/m"
    assert settings.camera_options["url"] == "sqlite:////var/lib/evcam/evcam.sqlite3"


def test_logrotate_snippet_parses(tmp_path: Path) -> None:
    """logrotate accepts the shipped snippet (a dry run with a private state file)."""
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not Path(logrotate).exists():
        pytest.skip("logrotate is not installed")
    result = subprocess.run(
        [
            logrotate,
            "--debug",
            "--state",
            str(tmp_path / "state"),
            str(ROOT / "systemd" / "evcam.logrotate"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


TEMPLATE = ROOT / "systemd" / "evcam@.service"


def test_template_unit_verifies_and_keeps_instances_apart(analyze: str, tmp_path: Path) -> None:
    """evcam@.service: an instance verifies silently, reads its own environment file and has
    its own state directory; otherwise it is evcam.service."""
    evcam = EVCAM if EVCAM.exists() else Path(shutil.which("evcam") or EVCAM)
    text = TEMPLATE.read_text()
    for line in (
        "EnvironmentFile=-/etc/evcam/evcam.env",
        "EnvironmentFile=-/etc/evcam/%i.env",
        "StateDirectory=evcam-%i",
        "Type=notify",
        "DynamicUser=yes",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    template = tmp_path / "evcam@.service"
    template.write_text(text.replace("ExecStart=/opt/evcam/bin/evcam ", f"ExecStart={evcam} "))
    instance = tmp_path / "evcam@a.service"
    instance.symlink_to(template)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
