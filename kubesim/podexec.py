"""`pods/{name}/exec` and `pods/{name}/log`: the API server's checks and answers, in front of the
runtime (kubesim/runtime.py) that runs the commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from kubesim import wsproto
from kubesim.errors import bad_request, not_found
from kubesim.messages import Request, Response

if TYPE_CHECKING:
    from kubesim.api import Api
    from kubesim.runtime import Container, PodBox

POD_KEY = ("", "pods")


def _multi(req: Request, key: str) -> list[str]:
    return [v for k, v in parse_qsl(req.raw_query, keep_blank_values=True) if k == key]


def _flag(req: Request, key: str) -> bool:
    return req.query.get(key, "").lower() in ("true", "1")


def _target(api: Api, req: Request, ns: str, name: str, what: str) -> tuple[PodBox, Container]:
    pod = api.store.get(POD_KEY, ns, name)
    if pod is None:
        raise not_found("", "pods", name)
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    cname = req.query.get("container", "")
    if not cname:
        if len(names) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            )
        cname = names[0]
    if cname not in names:
        raise bad_request(f"container {cname} is not valid for pod {name}")
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if what == "exec" and phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    runtime = api.runtime
    box = runtime.box(pod["metadata"]["uid"]) if runtime is not None else None
    if box is None or box.gone or phase != "Running" or cname not in box.containers:
        if what == "exec":
            raise bad_request(f'unable to upgrade connection: container not found ("{cname}")')
        raise bad_request(f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating')
    return box, box.containers[cname]


def exec_response(api: Api, req: Request, ns: str, name: str) -> Response:
    box, container = _target(api, req, ns, name, "exec")
    argv = _multi(req, "command")
    if not argv:
        raise bad_request("you must specify at least 1 command")
    if not any(_flag(req, k) for k in ("stdin", "stdout", "stderr")):
        raise bad_request("you must specify at least one of stdin, stdout, stderr")
    if _flag(req, "tty"):
        raise bad_request("kubesim does not simulate terminals (tty=true); run commands without one")
    if not wsproto.is_upgrade(req.headers):
        raise bad_request("Upgrade request required")
    protocol = wsproto.negotiate(req.headers.get("sec-websocket-protocol", ""))
    if protocol is None:
        raise bad_request(
            f"the exec stream needs one of the protocols {', '.join(wsproto.SUPPORTED_PROTOCOLS)}"
        )
    runtime = api.runtime
    wants = (_flag(req, "stdin"), _flag(req, "stdout"), _flag(req, "stderr"))

    def serve(sock: Any, proto: str) -> None:
        runtime.run_exec(sock, proto, box, container, argv, *wants)

    return Response(101, headers={"Sec-WebSocket-Protocol": protocol}, upgrade=serve)


def _int(req: Request, key: str) -> int | None:
    raw = req.query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{key}: invalid value {raw!r}") from None
    if value < 0 or (key == "sinceSeconds" and value == 0):
        raise bad_request(f"{key}: must be {'greater than 0' if key == 'sinceSeconds' else 'non-negative'}")
    return value


def log_response(api: Api, req: Request, ns: str, name: str) -> Response:
    box, container = _target(api, req, ns, name, "log")
    tail, since = _int(req, "tailLines"), _int(req, "sinceSeconds")
    body = api.runtime.logs(box, container, tail, since, _flag(req, "timestamps"))
    return Response(200, body, {"Content-Type": "text/plain"})
