"""The API tier never imports torch, diffusers or the worker package."""

from __future__ import annotations

import subprocess
import sys


def test_api_imports_without_torch(tmp_path) -> None:
    code = (
        "import sys\n"
        "from storage.settings import load_settings\n"
        "from api.app import create_app\n"
        f"app = create_app(load_settings(data_dir={str(tmp_path)!r}))\n"
        "banned = [m for m in ('torch', 'diffusers', 'transformers', 'worker') if m in sys.modules]\n"
        "assert not banned, banned\n"
        "print('routes', len(app.routes))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "routes" in result.stdout
