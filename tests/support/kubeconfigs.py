"""Kubeconfig files for tests: one cluster, one user, one context."""

from __future__ import annotations

import sys
from pathlib import Path

#: An exec credential plugin that prints the token held in the file named by its argument.
TOKEN_FILE_PLUGIN = """\
import json, sys
token = open(sys.argv[1]).read().strip()
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": {"token": token}}))
"""


def write_kubeconfig(path: Path, cluster: str, user: str = "    token: t\n") -> str:
    """``cluster`` and ``user`` are the indented YAML bodies of those two entries."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: k\n  cluster:\n{cluster}"
        "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
        f"users:\n- name: u\n  user:\n{user}"
    )
    return str(path)


def exec_user(script: Path, *args: object) -> str:
    """A user entry that runs ``script`` with this Python as its credential plugin."""
    listed = ", ".join(str(arg) for arg in (script, *args))
    return (
        "    exec:\n"
        "      apiVersion: client.authentication.k8s.io/v1beta1\n"
        f"      command: {sys.executable}\n"
        f"      args: [{listed}]\n"
    )
