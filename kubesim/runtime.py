"""What runs "inside" simulated pods (`--simulate`): HOST PROCESSES, in a folder per pod.

This is a development and test tool bound to loopback: `pods/exec` runs the given argv as a process
of the user running kubesim. Never expose kubesim to anyone you would not give a shell.

The model, kept simple and honest:

- every pod that reaches Running gets a folder `<state>/pods/<ns>/<pod>-<uid8>/`, removed with the
  pod; each container has its own root in it (`containers/<name>/`, what "/" means to it);
- each PersistentVolumeClaim has a folder `<state>/pvcs/<ns>/<claim>-<uid8>/` that outlives pods
  (and goes when the claim does); an `emptyDir` or other volume is a folder of the pod shared by its
  containers. A volumeMount is a symlink at the mount path inside the container's root;
- a command runs with the container's env as resolved when the pod started (`env` values,
  `valueFrom.secretKeyRef` / `configMapKeyRef` / `fieldRef`, `envFrom` secrets and config maps),
  `HOME` mapped into the container's root (the container's `HOME` env, else the first volumeMount
  under /home/, else /root), cwd = `workingDir` mapped into the root (else the root), `PATH` of
  the host, and nothing else of kubesim's environment. Absolute paths in commands are host paths:
  scripts should work relative to `$HOME` or the cwd (`KUBESIM_ROOT` holds the container's root);
- commands are killed (their whole process group) when the pod goes, at the exec time limit, when
  the client disconnects and when kubesim stops;
- the container log holds kubesim's lifecycle lines and, when the pod carries the annotation
  `kubesim.dev/run-command: "true"`, the output of the container's `command`/`args` run as above.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubesim import wsproto

log = logging.getLogger("kubesim")

Obj = dict[str, Any]
RUN_COMMAND_ANNOTATION = "kubesim.dev/run-command"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DEFAULT_EXEC_TIMEOUT = 300.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _inside(root: Path, path: str) -> Path:
    """`path` (absolute in the container) as a host path under `root`; never outside it."""
    parts = [p for p in Path("/" + path).parts[1:] if p not in (os.pardir, os.curdir)]
    return root.joinpath(*parts) if parts else root


@dataclass
class Container:
    name: str
    image: str
    root: Path
    env: dict[str, str]
    cwd: Path
    log_path: Path
    log_lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, line: str) -> None:
        with self.log_lock, contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as f:
            f.write(f"{_ts()} {line.rstrip(chr(10))}\n")  # (OSError: the pod's folder is gone)


@dataclass
class PodBox:
    uid: str
    namespace: str
    name: str
    folder: Path
    containers: dict[str, Container]
    procs: set[subprocess.Popen[bytes]] = field(default_factory=set)
    gone: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, proc: subprocess.Popen[bytes]) -> bool:
        with self.lock:
            if self.gone:
                _kill(proc)
                return False
            self.procs.add(proc)
            return True

    def untrack(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.procs.discard(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def exit_code(returncode: int) -> int:
    """A container runtime's exit code: 128 + the signal for a killed process."""
    return 128 - returncode if returncode < 0 else returncode


def status_for(argv: list[str], code: int) -> Obj:
    """The status channel's message, as the API server sends it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(argv)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class Runtime:
    def __init__(self, state_dir: Path | None = None, exec_timeout: float = DEFAULT_EXEC_TIMEOUT) -> None:
        self.owned = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="kubesim-state-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.exec_timeout = float(exec_timeout)
        self.boxes: dict[str, PodBox] = {}
        self.lock = threading.Lock()
        self.closed = False

    # ------------------------------------------------------------- pods
    def pod_started(self, pod: Obj, lookup: Callable[[str, str, str], Obj | None]) -> None:
        """Set up a pod that just reached Running (once per uid). `lookup(plural, ns, name)` reads
        Secrets, ConfigMaps and PVCs from the store (the caller holds the write lock)."""
        md = pod["metadata"]
        uid = md["uid"]
        if uid in self.boxes or self.closed:
            return
        ns, name = md["namespace"], md["name"]
        folder = self.state_dir / "pods" / _SAFE.sub("_", ns) / f"{_SAFE.sub('_', name)}-{uid[:8]}"
        spec = pod.get("spec") or {}
        volumes: dict[str, Path] = {}
        for vol in spec.get("volumes") or []:
            vname = str(vol.get("name") or "")
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            pvc = lookup("persistentvolumeclaims", ns, str(claim)) if claim else None
            if pvc is not None:
                path = self._pvc_folder(ns, str(claim), pvc["metadata"]["uid"])
            else:
                path = folder / "volumes" / _SAFE.sub("_", vname)
            path.mkdir(parents=True, exist_ok=True)
            volumes[vname] = path
        containers: dict[str, Container] = {}
        for c in spec.get("containers") or []:
            cname = str(c.get("name") or "")
            root = folder / "containers" / _SAFE.sub("_", cname)
            root.mkdir(parents=True, exist_ok=True)
            mounts = [m for m in c.get("volumeMounts") or [] if m.get("name") in volumes]
            for m in mounts:
                target = _inside(root, str(m.get("mountPath") or "/"))
                if target == root:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists() and not target.is_symlink():
                    target.symlink_to(volumes[m["name"]], target_is_directory=True)
            env = self._env(pod, c, lookup)
            home = env.get("HOME") or next(
                (str(m["mountPath"]) for m in mounts if str(m.get("mountPath", "")).startswith("/home/")),
                "/root",
            )
            home_path = _inside(root, home)
            home_path.mkdir(parents=True, exist_ok=True)
            cwd = _inside(root, str(c.get("workingDir") or "/"))
            cwd.mkdir(parents=True, exist_ok=True)
            env.update(
                HOME=str(home_path),
                PATH=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                HOSTNAME=name,
                KUBESIM_ROOT=str(root),
            )
            container = Container(cname, str(c.get("image") or ""), root, env, cwd, folder / f"{cname}.log")
            containers[cname] = container
            container.log(f"kubesim: started container {cname} (image {container.image})")
        box = PodBox(uid, ns, name, folder, containers)
        with self.lock:
            self.boxes[uid] = box
        if (md.get("annotations") or {}).get(RUN_COMMAND_ANNOTATION) == "true":
            for c in spec.get("containers") or []:
                argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
                if argv:
                    self._run_main(box, containers[str(c.get("name") or "")], argv)

    def pod_gone(self, uid: str) -> None:
        """The pod was deleted: kill its processes, remove its folder (in the background)."""
        with self.lock:
            box = self.boxes.pop(uid, None)
        if box is None:
            return
        with box.lock:
            box.gone = True
            procs = list(box.procs)
        for proc in procs:
            _kill(proc)
        threading.Thread(target=shutil.rmtree, args=(box.folder,), kwargs={"ignore_errors": True}).start()

    def pvcs_gone(self, live: set[str]) -> None:
        """Remove the folders of claims whose uid is not in `live`."""
        for ns_dir in (self.state_dir / "pvcs").glob("*"):
            for folder in ns_dir.iterdir():
                if folder.name.rsplit("-", 1)[-1] not in live:
                    shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.closed = True
        for uid in list(self.boxes):
            self.pod_gone(uid)
        if self.owned:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def box(self, uid: str) -> PodBox | None:
        return self.boxes.get(uid)

    def _pvc_folder(self, ns: str, claim: str, uid: str) -> Path:
        return self.state_dir / "pvcs" / _SAFE.sub("_", ns) / f"{_SAFE.sub('_', claim)}-{uid[:8]}"

    def _env(self, pod: Obj, c: Obj, lookup: Callable[[str, str, str], Obj | None]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}

        def data_of(plural: str, name: str) -> dict[str, str]:
            obj = lookup(plural, ns, name) if name else None
            if obj is None:
                return {}
            if plural == "secrets":
                out = {
                    k: base64.b64decode(v).decode("utf-8", "replace")
                    for k, v in (obj.get("data") or {}).items()
                }
                out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
                return out
            return {k: str(v) for k, v in (obj.get("data") or {}).items()}

        for src in c.get("envFrom") or []:
            prefix = str(src.get("prefix") or "")
            if src.get("secretRef"):
                values = data_of("secrets", str(src["secretRef"].get("name") or ""))
            elif src.get("configMapRef"):
                values = data_of("configmaps", str(src["configMapRef"].get("name") or ""))
            else:
                continue
            env.update({prefix + k: v for k, v in values.items()})
        fields = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": ns,
            "metadata.uid": pod["metadata"]["uid"],
            "status.podIP": str((pod.get("status") or {}).get("podIP") or ""),
        }
        for item in c.get("env") or []:
            key = str(item.get("name") or "")
            if "value" in item:
                env[key] = str(item.get("value") or "")
                continue
            ref = item.get("valueFrom") or {}
            if ref.get("secretKeyRef"):
                sel = ref["secretKeyRef"]
                value = data_of("secrets", str(sel.get("name") or "")).get(str(sel.get("key") or ""))
            elif ref.get("configMapKeyRef"):
                sel = ref["configMapKeyRef"]
                value = data_of("configmaps", str(sel.get("name") or "")).get(str(sel.get("key") or ""))
            elif ref.get("fieldRef"):
                value = fields.get(str(ref["fieldRef"].get("fieldPath") or ""))
            else:
                value = None
            if value is not None:
                env[key] = value
            elif key:
                env.setdefault(key, "")
        return env

    def _run_main(self, box: PodBox, container: Container, argv: list[str]) -> None:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=container.cwd,
                env=container.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            container.log(f"kubesim: cannot run the container's command: {exc.strerror}")
            return
        if not box.track(proc):
            return

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                container.log(line.decode("utf-8", "replace"))
            code = exit_code(proc.wait())
            box.untrack(proc)
            if not box.gone:
                container.log(f"kubesim: container {container.name} command exited with code {code}")

        threading.Thread(target=pump, name=f"kubesim-main-{box.name}", daemon=True).start()

    # ------------------------------------------------------------- logs
    def logs(
        self,
        box: PodBox,
        container: Container,
        tail: int | None,
        since_seconds: int | None,
        timestamps: bool,
    ) -> bytes:
        try:
            with container.log_lock:
                lines = container.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        if since_seconds is not None:
            cutoff = datetime.now(UTC).timestamp() - since_seconds
            kept = []
            for line in lines:
                stamp = line.split(" ", 1)[0]
                with contextlib.suppress(ValueError):
                    if (
                        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
                        >= cutoff
                    ):
                        kept.append(line)
            lines = kept
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if not timestamps:
            lines = [line.split(" ", 1)[1] if " " in line else "" for line in lines]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    # ------------------------------------------------------------- exec
    def run_exec(
        self,
        sock: socket.socket,
        protocol: str,
        box: PodBox,
        container: Container,
        argv: list[str],
        want_stdin: bool,
        want_stdout: bool = True,
        want_stderr: bool = True,
    ) -> None:
        """Serve one exec on an upgraded connection: run `argv`, relay the channels, send the exit
        status on channel 3, close. Everything on the socket happens in this thread."""
        session = _ExecSession(sock, protocol, box, container, argv, want_stdin, self.exec_timeout)
        session.want_stdout, session.want_stderr = want_stdout, want_stderr
        session.run()


class _ExecSession:
    def __init__(
        self,
        sock: socket.socket,
        protocol: str,
        box: PodBox,
        container: Container,
        argv: list[str],
        want_stdin: bool,
        time_limit: float,
    ) -> None:
        self.sock, self.protocol, self.box, self.container = sock, protocol, box, container
        self.argv, self.want_stdin, self.time_limit = argv, want_stdin, time_limit
        self.parser = wsproto.FrameParser()
        self.stdin_buf = bytearray()
        self.stdin_eof = False
        self.client_gone = False
        self.want_stdout = self.want_stderr = True

    def send(self, channel: int, data: bytes) -> None:
        self.sock.sendall(wsproto.encode(wsproto.OP_BINARY, bytes([channel]) + data))

    def run(self) -> None:
        try:
            proc = subprocess.Popen(
                self.argv,
                cwd=self.container.cwd,
                env=self.container.env,
                stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.want_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE if self.want_stderr else subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self._finish_error(exc)
            return
        if not self.box.track(proc):
            proc.wait()
            self._finish(proc, timed_out=False)
            return
        try:
            timed_out = self._relay(proc)
        finally:
            if self.client_gone:
                _kill(proc)
            proc.wait()
            self.box.untrack(proc)
        if not self.client_gone:
            self._finish(proc, timed_out)

    def _relay(self, proc: subprocess.Popen[bytes]) -> bool:
        outputs = {pipe.fileno(): ch for pipe, ch in ((proc.stdout, STDOUT), (proc.stderr, STDERR)) if pipe}
        stdin_fd = proc.stdin.fileno() if proc.stdin is not None else None
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
        deadline = time.monotonic() + self.time_limit
        timed_out = False
        self.sock.settimeout(5.0)
        while outputs or proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0 and not timed_out:
                timed_out = True
                _kill(proc)
                with contextlib.suppress(OSError):
                    self.send(
                        STDERR, f"kubesim: time limit of {self.time_limit:g}s exceeded; killed\n".encode()
                    )
            watch = list(outputs) + ([] if self.client_gone else [self.sock.fileno()])
            writable = [stdin_fd] if stdin_fd is not None and self.stdin_buf else []
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            can_write: list[int] = []
            if pending:
                ready = [self.sock.fileno()]
            else:
                # once both outputs closed only the exit is awaited: poll it often
                wait = (0.5 if outputs else 0.005) if left > 0 else 0.2
                ready, can_write, _ = select.select(
                    watch, writable, [], max(0.0, min(left, wait)) if left > 0 else wait
                )
            for fd in ready:
                if fd in outputs:
                    data = os.read(fd, 65536)
                    if data:
                        try:
                            self.send(outputs[fd], data)
                        except OSError:
                            self.client_gone = True
                            return timed_out
                    else:
                        del outputs[fd]
                elif not self._read_client(proc):
                    self.client_gone = True
                    return timed_out
            if stdin_fd is not None and (can_write or self.stdin_buf):
                stdin_fd = self._write_stdin(proc, stdin_fd)
            if stdin_fd is not None and self.stdin_eof and not self.stdin_buf:
                with contextlib.suppress(OSError):
                    assert proc.stdin is not None
                    proc.stdin.close()
                stdin_fd = None
        return timed_out

    def _read_client(self, proc: subprocess.Popen[bytes]) -> bool:
        """Read what the client sent; False when it is gone (EOF, close frame, protocol error)."""
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return True
        except OSError:
            return False
        if not data:
            return False
        try:
            frames = self.parser.feed(data)
        except wsproto.ProtocolError:
            return False
        for opcode, payload in frames:
            if opcode == wsproto.OP_CLOSE:
                return False
            if opcode == wsproto.OP_PING:
                self.sock.sendall(wsproto.encode(wsproto.OP_PONG, payload))
                continue
            if opcode not in (wsproto.OP_BINARY, wsproto.OP_TEXT) or not payload:
                continue
            channel, body = payload[0], payload[1:]
            if channel == STDIN and proc.stdin is not None and not self.stdin_eof:
                self.stdin_buf += body
            elif channel == CLOSE and self.protocol == wsproto.V5 and body[:1] == bytes([STDIN]):
                self.stdin_eof = True
        return True

    def _write_stdin(self, proc: subprocess.Popen[bytes], fd: int) -> int | None:
        if not self.stdin_buf:
            return fd
        try:
            n = os.write(fd, self.stdin_buf[:65536])
            del self.stdin_buf[:n]
        except BlockingIOError:
            pass
        except OSError:  # the process closed its stdin
            self.stdin_buf.clear()
            self.stdin_eof = True
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            return None
        return fd

    def _finish(self, proc: subprocess.Popen[bytes], timed_out: bool) -> None:
        code = exit_code(proc.returncode if proc.returncode is not None else -9)
        status = status_for(self.argv, code)
        self._close(status)

    def _finish_error(self, exc: OSError) -> None:
        what = "executable file not found in $PATH" if isinstance(exc, FileNotFoundError) else exc.strerror
        self._close(
            {
                "metadata": {},
                "status": "Failure",
                "message": f'exec failed: unable to start container process: exec: "{self.argv[0]}": {what}',
                "reason": "InternalError",
                "details": {"causes": [{"message": f'exec: "{self.argv[0]}": {what}'}]},
            }
        )

    def _close(self, status: Obj) -> None:
        with contextlib.suppress(OSError):
            self.send(STATUS, json.dumps(status).encode())
            self.sock.sendall(wsproto.close_frame(1000))
