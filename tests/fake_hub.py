"""A local HTTP server that stands in for the Hugging Face Hub (there is no network here).

It answers the few endpoints that `create_repo` + `upload_folder` use (repo creation,
card metadata validation, branches, preupload, commit, Space variables), telling the client to send every file inline
("regular" upload mode), and records each request so a test can check what one commit
carried. Start it, point HF_ENDPOINT at `server.url` in a fresh process, read `server.requests`.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.requests: list[dict] = []  # {"method", "path", "headers", "body"}
        self.branches: list[str] = []
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "files": {path: bytes}}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output quiet
                pass

            def _body(self) -> bytes:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw

            def _reply(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                hub.requests.append(
                    {
                        "method": "GET",
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": b"",
                    }
                )
                self._reply(404, {"error": f"fake hub: no GET {self.path}"})

            def do_POST(self):
                body = self._body()
                hub.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["api", "repos"] and parts[2] == "create":
                    request = json.loads(body)
                    kind = request.get("type", "model")
                    prefix = "" if kind == "model" else f"{kind}s/"
                    repo = f"{request.get('organization') or 'user'}/{request['name']}"
                    return self._reply(200, {"url": f"{hub.url}/{prefix}{repo}", "name": repo})
                if len(parts) >= 6 and parts[0] == "api" and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                    return self._reply(200, {"files": modes})
                if len(parts) >= 6 and parts[0] == "api" and parts[4] == "commit":
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    commit = {"repo": "/".join(parts[2:4]), "revision": parts[5], "files": {}}
                    for line in lines:
                        if line["key"] == "header":
                            commit["summary"] = line["value"]["summary"]
                        elif line["key"] == "file":
                            commit["files"][line["value"]["path"]] = base64.b64decode(
                                line["value"]["content"]
                            )
                    hub.commits.append(commit)
                    url = f"{hub.url}/{commit['repo']}/commit/{'0' * 40}"
                    return self._reply(200, {"commitUrl": url, "commitOid": "0" * 40, "pullRequestUrl": None})
                if len(parts) >= 6 and parts[0] == "api" and parts[4] == "branch":
                    hub.branches.append("/".join(parts[5:]))
                    return self._reply(200, {})
                if parts == ["api", "validate-yaml"]:  # the real Hub checks README.md metadata here
                    return self._reply(200, {"errors": [], "warnings": []})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] == "variables":
                    return self._reply(200, {})
                return self._reply(404, {"error": f"fake hub: no POST {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
