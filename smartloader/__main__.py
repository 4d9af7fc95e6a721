"""Command line: ``smartloader demo`` (and the other subcommands as they land)."""
from __future__ import annotations

import sys

COMMANDS = {
    "demo": "time to the same accuracy: uniform vs SmartLoader at paired budgets, with a plot",
    "plan": "print the phases, schedules, input shapes and compute of a config",
    "validate": "check a config file and list every problem with its key path",
    "keys": "print every config key with its type, default and bounds (markdown table)",
    "preset": "print a shipped configuration (e.g. combined) as YAML",
    "views": "fill the view cache on disk of a JPEG folder before training (two_resolution)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: smartloader COMMAND [options]", "", "commands:"]
        lines += [f"  {name:10} {text}" for name, text in COMMANDS.items()]
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            lines.insert(0, f"smartloader: unknown command {argv[0]!r}")
        print("\n".join(lines), file=out)
        return 0 if out is sys.stdout else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from smartloader.tools.demo import main as demo
        return demo(rest)
    if command == "plan":
        from smartloader.tools.cli import plan_main
        return plan_main(rest)
    if command == "validate":
        from smartloader.tools.cli import validate_main
        return validate_main(rest)
    if command == "keys":
        from smartloader.tools.cli import keys_main
        return keys_main(rest)
    if command == "preset":
        from smartloader.tools.cli import preset_main
        return preset_main(rest)
    if command == "views":
        from smartloader.tools.views import views_main
        return views_main(rest)
    raise AssertionError(command)


if __name__ == "__main__":
    sys.exit(main())
