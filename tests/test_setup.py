"""The set-up step (`scripts/setup-system`, run by `make demo` and `make test`) and the CLI without system tools.

dpkg-query, id, sudo and apt-get are fake programs on PATH in a temporary folder; the script runs in a real bash.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup-system"
VOICEBOT = str(Path(sys.executable).parent / "voicebot")
ALL_PACKAGES = [line.split()[0] for line in (ROOT / "system-packages.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

REAL_TOOLS = ("bash", "dirname", "grep", "env")
"""The real programs the script and the fakes need on PATH (the script finds bash there, as make runs it)."""


def fake_program(folder: Path, name: str, body: str) -> None:
    """Write an executable shell script `name` into `folder`."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def fake_system(tmp_path: Path, *, installed: list[str], uid: int, sudo: str | None) -> dict[str, str]:
    """An environment whose dpkg lists `installed`, whose user is `uid`, whose sudo is passwordless, refusing or none.

    apt-get and a passwordless sudo append their command lines to tmp_path/calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in REAL_TOOLS:  # only these: a real sudo or apt-get must never be reached
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (tmp_path / "installed").write_text("".join(f"{p}\n" for p in installed))
    calls = tmp_path / "calls"
    fake_program(bin_dir, "dpkg-query", f'for package; do :; done\n'
                                        f'grep -qx "$package" {tmp_path / "installed"} && printf "ii " || exit 1')
    fake_program(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    fake_program(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}')
    if sudo == "ok":
        fake_program(bin_dir, "sudo", f'echo "sudo $*" >> {calls}\n[ "$1" = -n ] && shift\n"$@"')
    elif sudo == "refuses":
        fake_program(bin_dir, "sudo", 'echo "sudo: a password is required" >&2; exit 1')
    return {**os.environ, "PATH": str(bin_dir)}


def setup_system(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the set-up script for `target` from / (not the checkout: it must find its list by itself)."""
    return subprocess.run([str(SETUP), target], capture_output=True, text=True, env=env, cwd="/", timeout=60)


def test_make_demo_and_make_test_run_the_setup_step_first() -> None:
    for target in ("demo", "test"):
        quiet = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        plan = subprocess.run(["make", "--no-print-directory", "-n", target], capture_output=True, text=True,
                              cwd=ROOT, check=True, env=quiet)  # as a user types it, even when run under `make test`
        assert plan.stdout.splitlines()[0] == f"scripts/setup-system {target}"
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # the package list lives in one place


@pytest.mark.parametrize(("target", "sudo", "missing"), [
    ("demo", "refuses", ["espeak-ng"]),
    ("test", None, ["espeak-ng", "kamailio", "sox"]),
])
def test_missing_package_without_root_prints_one_line_to_run(tmp_path: Path, target: str, sudo: str | None,
                                                              missing: list[str]) -> None:
    env = fake_system(tmp_path, installed=[p for p in ALL_PACKAGES if p not in missing], uid=1000, sudo=sudo)
    done = setup_system(target, env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"setup-system: `make {target}` needs Debian packages that are not installed; run: sudo apt-get update "
        f"&& sudo apt-get install -y --no-install-recommends {' '.join(missing)}"]
    assert not (tmp_path / "calls").exists()


@pytest.mark.parametrize(("uid", "sudo"), [(0, None), (1000, "ok")])
def test_missing_packages_are_installed_as_root_or_with_passwordless_sudo(tmp_path: Path, uid: int,
                                                                         sudo: str | None) -> None:
    installed = ["espeak-ng", "sip-tester", "chromium"]
    env = fake_system(tmp_path, installed=installed, uid=uid, sudo=sudo)
    done = setup_system("test", env)
    assert done.returncode == 0, done.stderr
    missing = " ".join(p for p in ALL_PACKAGES if p not in installed)
    assert done.stderr.splitlines() == [f"setup-system: installing {missing}"]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [line for line in calls if line.startswith("apt-get")] == [
        "apt-get update -qq", f"apt-get install -y -qq --no-install-recommends {missing}"]
    via_sudo = [line for line in calls if line.startswith("sudo apt-get") or line.startswith("sudo env")]
    assert via_sudo == ([] if uid == 0 else [
        "sudo apt-get update -qq",
        f"sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {missing}"])


def test_installed_packages_cost_no_apt_get(tmp_path: Path) -> None:
    env = fake_system(tmp_path, installed=ALL_PACKAGES, uid=1000, sudo="refuses")
    done = setup_system("test", env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "calls").exists()


def test_failed_install_says_so_in_one_line(tmp_path: Path) -> None:
    env = fake_system(tmp_path, installed=[], uid=0, sudo=None)
    fake_program(tmp_path / "bin", "apt-get", 'echo "E: Unable to locate package espeak-ng" >&2; exit 100')
    done = setup_system("demo", env)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("setup-system: apt-get could not install espeak-ng libfst-tools "
                                            "libfst22-plugins-base; see its message above")


def hidden_espeak_env(tmp_path: Path) -> dict[str, str]:
    """The environment with a PATH that holds only the virtualenv's programs (no espeak-ng), data under tmp_path."""
    path = str(Path(sys.executable).parent)
    assert shutil.which("espeak-ng", path=path) is None
    return {**os.environ, "PATH": path, "VOICEBOT_DATA_DIR": str(tmp_path / "var")}


@pytest.mark.model
@pytest.mark.parametrize("command", [["demo"], ["serve", "--port", "0", "--rules-only"]])
def test_cli_without_espeak_prints_one_line_and_no_traceback(tmp_path: Path, command: list[str]) -> None:
    done = subprocess.run([VOICEBOT, *command, "--db", str(tmp_path / "v.db")], capture_output=True, text=True,
                          env=hidden_espeak_env(tmp_path), timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "Error: espeak-ng not found; install the Debian package espeak-ng: sudo apt-get install -y espeak-ng"]
