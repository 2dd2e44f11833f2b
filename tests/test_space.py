"""The Hugging Face Space files, checked statically (docker cannot run here)."""

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _front_matter(path: Path) -> dict:
    text = path.read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.DOTALL)
    assert match, f"{path} must start with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1))


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_space_card_front_matter() -> None:
    meta = _front_matter(ROOT / "space" / "README.md")
    assert meta["sdk"] == "docker"
    assert meta["app_port"] == 8501
    for field in ("title", "emoji", "colorFrom", "colorTo", "short_description", "license"):
        assert meta.get(field), field
    colors = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colors and meta["colorTo"] in colors
    assert len(meta["short_description"]) <= 60
    assert isinstance(meta["pinned"], bool)


def test_dockerfile_runs_the_app_as_uid_1000_on_the_space_port() -> None:
    instructions = _dockerfile()
    kinds = [kind for kind, _ in instructions]
    base = dict(instructions)["FROM"]
    version = re.match(r"python:(\d+)\.(\d+)", base)
    assert version and (int(version.group(1)), int(version.group(2))) >= (3, 11), base
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    assert re.search(r"useradd\b.*--uid 1000", runs), "a user with uid 1000"
    user = [args for kind, args in instructions if kind == "USER"]
    assert user and user[-1].split(":")[0] in ("user", "1000")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in runs
    assert runs.index("torch==2.13.0") < runs.index("-r requirements.txt")
    assert dict(instructions)["EXPOSE"].split() == ["8501"]
    cmd = [args for kind, args in instructions if kind == "CMD"][-1]
    argv = yaml.safe_load(cmd) if cmd.startswith("[") else shlex.split(cmd)
    assert argv[:3] == ["streamlit", "run", "app/main.py"]
    assert "--server.port=8501" in argv and "--server.address=0.0.0.0" in argv
    assert "--server.enableXsrfProtection=false" in argv
    assert (ROOT / argv[2]).is_file()


def test_streamlit_config_and_requirements() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert 1 <= config["server"]["maxUploadSize"] <= 200
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("streamlit", "plotly", "torch", "safetensors", "huggingface-hub", "pillow"):
        assert package in requirements.lower(), package
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "checkpoints/" not in ignored and ".git" in ignored  # the default model ships
