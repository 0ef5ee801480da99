"""Run a ROS 2 YAML launch file where ``launch_ros`` is not installed (the pip path).

``ros2 launch`` reads the same files; this stand-in implements the subset
our launch files use, with the same meaning:

- ``arg``: ``name``, ``default`` (overridden by ``name:=value`` arguments);
- ``node``: ``pkg``, ``exec``, ``name``, ``namespace``, ``param`` (``from:`` a
  parameter file, or ``name``/``value``), ``remap`` (``from``/``to``),
  ``on_exit: shutdown`` (stop the launch when this node exits);
- ``include``: ``file`` and ``arg`` (``name``/``value``) — another YAML launch file's
  nodes, its arguments set from the includer's (launch configurations are global, as in
  launch) and the ``arg`` list;
- substitutions ``$(var NAME)``, ``$(find-pkg-share PKG)``, ``$(env NAME [DEFAULT])``.

Anything else is refused with a clear error rather than silently ignored.
Nodes run as separate processes with ``--ros-args`` exactly as launch_ros
passes them; Ctrl-C or a shutdown sends SIGINT to every node and waits.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SUBSTITUTION = re.compile(r"\$\((var|find-pkg-share|env) ([^)]*)\)")
NODE_KEYS = {"pkg", "exec", "name", "namespace", "param", "remap", "on_exit", "output"}
SHUTDOWN_GRACE_S = 10.0


class LaunchError(ValueError):
    """A launch file or argument this runner cannot honour; the message says which."""


@dataclass
class NodeProcess:
    name: str
    command: list[str]
    shutdown_on_exit: bool
    process: subprocess.Popen | None = None


@dataclass
class LaunchPlan:
    nodes: list[NodeProcess] = field(default_factory=list)
    arguments: dict[str, str] = field(default_factory=dict)


def package_prefix(package: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return Path(get_package_prefix(package))
    except (PackageNotFoundError, OSError) as error:
        raise LaunchError(f"package '{package}' not found in AMENT_PREFIX_PATH ({error})") from error


def _substitute(value: object, arguments: dict[str, str]) -> object:
    if isinstance(value, list):
        return [_substitute(item, arguments) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        kind, body = match.group(1), match.group(2).strip()
        if kind == "var":
            if body not in arguments:
                raise LaunchError(f"$(var {body}): no launch argument named '{body}'")
            return arguments[body]
        if kind == "find-pkg-share":
            return str(package_prefix(body) / "share" / body)
        name, _, default = body.partition(" ")
        if name not in os.environ and not default:
            raise LaunchError(f"$(env {name}): environment variable not set and no default")
        return os.environ.get(name, default)

    return SUBSTITUTION.sub(replace, value)


def _parameter_value(value: object) -> str:
    """``-p name:=value`` text: strings as written (rcl reads them as YAML, so "3" is an int,
    as with ros2 launch), typed values from the file as flow-style YAML."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def plan_launch(path: Path, overrides: dict[str, str], inherited: dict[str, str] | None = None) -> LaunchPlan:
    """Read a YAML launch file into the processes it starts. ``overrides`` must name declared
    arguments; ``inherited`` (an includer's arguments) set those the file declares too."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LaunchError(f"{path}: cannot read launch file ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("launch"), list):
        raise LaunchError(f"{path}: expected a top-level 'launch:' list")
    plan = LaunchPlan()
    declared = set()
    for entity in document["launch"]:
        ((kind, body),) = entity.items()
        if kind == "arg":
            declared.add(body["name"])
            if body["name"] in overrides:
                plan.arguments[body["name"]] = overrides[body["name"]]
            elif inherited and body["name"] in inherited:
                plan.arguments[body["name"]] = inherited[body["name"]]
            elif "default" in body:
                plan.arguments[body["name"]] = str(_substitute(body["default"], plan.arguments))
            else:
                raise LaunchError(
                    f"{path}: launch argument '{body['name']}' has no default; pass {body['name']}:=VALUE"
                )
        elif kind == "node":
            unknown = set(body) - NODE_KEYS
            if unknown:
                raise LaunchError(
                    f"{path}: node attribute(s) {', '.join(sorted(unknown))} not supported by this runner"
                )
            plan.nodes.append(_node_process(body, plan.arguments))
        elif kind == "include":
            unknown = set(body) - {"file", "arg"}
            if unknown or "file" not in body:
                raise LaunchError(f"{path}: include takes 'file' and 'arg' only, got {', '.join(sorted(body))}")
            included = Path(str(_substitute(body["file"], plan.arguments)))
            arguments = {a["name"]: str(_substitute(a["value"], plan.arguments)) for a in body.get("arg", [])}
            plan.nodes.extend(plan_launch(included, arguments, inherited=plan.arguments).nodes)
        else:
            raise LaunchError(f"{path}: '{kind}' entities are not supported by this runner (use ros2 launch)")
    unknown_overrides = set(overrides) - declared
    if unknown_overrides:
        raise LaunchError(f"unknown launch argument(s): {', '.join(sorted(unknown_overrides))}")
    return plan


def _node_process(body: dict, arguments: dict[str, str]) -> NodeProcess:
    package, executable = _substitute(body["pkg"], arguments), _substitute(body["exec"], arguments)
    binary = package_prefix(package) / "lib" / package / executable
    if not binary.is_file():
        raise LaunchError(f"executable '{executable}' not found in package '{package}' ({binary})")
    command = [str(binary), "--ros-args"]
    name = _substitute(body.get("name", executable), arguments)
    if "name" in body:
        command += ["-r", f"__node:={name}"]
    if "namespace" in body:
        command += ["-r", f"__ns:={_substitute(body['namespace'], arguments)}"]
    for parameter in body.get("param", []):
        if "from" in parameter:
            command += ["--params-file", str(_substitute(parameter["from"], arguments))]
        else:
            value = _parameter_value(_substitute(parameter["value"], arguments))
            command += ["-p", f"{parameter['name']}:={value}"]
    for remap in body.get("remap", []):
        command += ["-r", f"{_substitute(remap['from'], arguments)}:={_substitute(remap['to'], arguments)}"]
    on_exit = body.get("on_exit")
    if on_exit not in (None, "shutdown"):
        raise LaunchError(f"node {name}: on_exit '{on_exit}' not supported (only 'shutdown')")
    return NodeProcess(str(name), command, on_exit == "shutdown")


def start_nodes(plan: LaunchPlan, output=None) -> None:
    """Start every node; ``output``: a file for their stdout and stderr (default: ours)."""
    for node in plan.nodes:
        stderr = subprocess.STDOUT if output is not None else None  # None: inherited, as stdout
        node.process = subprocess.Popen(node.command, stdout=output, stderr=stderr)


def stop_nodes(plan: LaunchPlan) -> bool:
    """SIGINT every node still running, wait (kill after the grace period); True if any failed."""
    for node in plan.nodes:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    for node in plan.nodes:
        try:
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[launch] {node.name} did not stop within {SHUTDOWN_GRACE_S:.0f} s: killing it", file=sys.stderr)
            node.process.kill()
            node.process.wait()
    failed = False
    for node in plan.nodes:
        code = node.process.returncode
        if code not in (0, -signal.SIGINT):
            print(f"[launch] {node.name} exited with status {code}", file=sys.stderr)
            failed = True
    return failed


def run_launch(plan: LaunchPlan, output=None) -> int:
    """Start every node (their output to ``output`` if given); stop all on Ctrl-C or when an
    ``on_exit: shutdown`` node exits. Returns non-zero if any node failed."""
    start_nodes(plan, output)
    try:
        while True:
            exited = [n for n in plan.nodes if n.process.poll() is not None]
            if any(n.shutdown_on_exit for n in exited) or len(exited) == len(plan.nodes):
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        failed = stop_nodes(plan)
    return 1 if failed else 0


def parse_overrides(arguments: list[str]) -> dict[str, str]:
    overrides = {}
    for argument in arguments:
        name, separator, value = argument.partition(":=")
        if not separator or not name:
            raise LaunchError(f"launch arguments are name:=value, got '{argument}'")
        overrides[name] = value
    return overrides
