"""Named assets from the command line: `inpaint-worker tiny-model --asset` and `inpaint-admin assets`."""

from __future__ import annotations

import os
import subprocess

from tests.support.stack import BIN


def test_point_a_builtin_name_at_a_tiny_model_and_back(tmp_path) -> None:
    env = {**os.environ, "INPAINT_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> str:
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    run("inpaint-admin", "migrate")
    written = run("inpaint-worker", "tiny-model", str(tmp_path / "cn"), "--kind", "controlnet", "--asset", "Canny")
    assert "registered it as 'Canny'" in written
    assert (tmp_path / "cn" / "config.json").is_file()
    listing = run("inpaint-admin", "assets", "list")
    assert f"controlnet\tCanny\t{tmp_path / 'cn'}\tsdxl" in listing
    assert "controlnet\tDepth\tdiffusers/controlnet-depth-sdxl-1.0" in listing, "built-ins are listed too"

    run(
        "inpaint-admin",
        "assets",
        "register",
        "safety_checker",
        "default",
        "/models/checker",
        "--option",
        "score_offset=0.5",
    )
    assert "safety_checker\tdefault\t/models/checker\t-\t{'score_offset': 0.5}" in run(
        "inpaint-admin", "assets", "list"
    )

    assert run("inpaint-admin", "assets", "delete", "controlnet", "Canny").strip() == "deleted"
    assert "controlnet\tCanny\tdiffusers/controlnet-canny-sdxl-1.0" in run("inpaint-admin", "assets", "list")
