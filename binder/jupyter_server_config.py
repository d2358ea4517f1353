"""JupyterLab on Binder: a launcher tile that opens the Panel app (jupyter-server-proxy).

The app is served by ``panel serve`` under the proxy's prefix; the proxy starts it on
the first visit of ``<binder url>/accelmd-app/app`` (about 20 s: imports and warm-up).
"""

import os

# Binder checks the repository out in $HOME; elsewhere, start Jupyter from the repository.
REPO = os.environ.get("REPO_DIR", os.getcwd())

c = get_config()  # noqa: F821  (provided by Jupyter when it reads this file)
c.ServerProxy.servers = {
    "accelmd-app": {
        "command": [
            "panel",
            "serve",
            os.path.join(REPO, "widgets", "app.py"),
            "--port",
            "{port}",
            "--address",
            "127.0.0.1",
            "--allow-websocket-origin",
            "*",
            "--prefix",
            "{base_url}accelmd-app",
            "--warm",
        ],
        "absolute_url": True,
        "timeout": 180,
        "launcher_entry": {"title": "accelmd app", "path_info": "accelmd-app/app"},
    }
}
