"""A command for tests/test_commands.py: prints how it was started, then exits as asked."""

import atexit
import json
import os
import signal
import sys

atexit.register(print, "atexit handler ran")
seen = {"argv": sys.argv, "path": sys.path, "cwd": os.getcwd(), "env": os.environ.get("PROBE"), "stdin": sys.stdin.read()}
print(json.dumps(seen))
print("to stderr", file=sys.stderr)
print("forked" if "torch" in sys.modules else "new interpreter", file=sys.stderr)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(sys.argv[1]))
