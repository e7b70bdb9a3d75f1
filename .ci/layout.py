#!/usr/bin/env python3
"""The workspace's dependency rules, checked (docs/ARCHITECTURE.md, "Dependency rules").

1. Inside each crate, a module may name (`crate::X`, in a `use` or a path) only the modules its
   row of the table below allows. Comments are ignored; `#[cfg(test)]` code is not: a test
   module follows its module's rules.
2. `commitd-core`'s normal dependencies (`cargo tree -p commitd-core -e normal`) contain no
   async runtime, database, HTTP server or client, cloud SDK or terminal crate.
3. `commitd-core`'s sources never open a file, read a directory, the clock, the environment or
   the network (`std::fs`, `File::open`, `Utc::now`, `Instant::now`, `SystemTime`, `std::env`,
   `std::net`, ...). A scan, not a compiler fact for the clock: commitd-core asks chrono for no
   `clock`, but augurs' changepoint detector brings chrono's default features (argmin ->
   slog-term), so `Utc::now` would compile; this check is what keeps it out.

Usage: .ci/layout.py [--strict] [--no-cargo]
  --strict    also fail on the KNOWN exceptions (the debt listed below)
  --no-cargo  skip the `cargo tree` checks (rule 1 only; no build needed, no network)

Exit status 1 with one line per violation, naming the file and line.
"""

import os
import re
import subprocess
import sys

ROOT = os.environ.get("LAYOUT_ROOT") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CORE = ["domain", "ingest", "forecast", "billing", "optimize", "policy", "plan", "backtest",
        "assess"]

# commitd-core: domain <- {ingest, forecast, billing, optimize, policy} <- plan <- backtest.
# The middle tier's siblings do not import each other, except optimize -> billing (the LP
# bills with billing's rules) and policy -> optimize (PolicySet::planning_bounds returns the
# optimizer's Constraints).
CORE_RULES = {
    "domain": [],
    "ingest": ["domain"],
    "forecast": ["domain"],
    "billing": ["domain"],
    "optimize": ["domain", "billing"],
    "policy": ["domain", "optimize"],
    "plan": ["domain", "ingest", "forecast", "billing", "optimize", "policy"],
    "backtest": ["domain", "ingest", "forecast", "billing", "optimize", "policy", "plan"],
    # assess: a report over the usage model and the commitments; nothing imports it.
    "assess": ["domain"],
}

# commitd: store <- audit <- proposals <- execute <- service <- startup / cli. The core's
# modules are re-exported at the crate root (`crate::domain`, ...) and count as core here.
# Markets use only store and the core's domain (execute writes the audit events); api (and the
# console) use proposals, audit, store and telemetry, never markets or service.
SERVICE_RULES = {
    "store": ["domain", "dburl"],
    "audit": CORE + ["store", "dburl"],
    "config": CORE + ["dburl"],
    "sources": CORE + ["config"],
    "markets": ["domain", "store"],
    "identity": CORE + ["store", "audit"],
    "proposals": CORE + ["store", "audit", "config"],
    "execute": CORE + ["store", "audit", "proposals", "markets", "sources", "config"],
    "telemetry": CORE + ["store", "proposals", "config"],
    "notify": CORE + ["proposals", "config"],
    "report": CORE + ["store", "audit", "sources"],
    # report: the console's finance page shows the monthly report (report::build is pure: it
    # takes the audit events); the console reads no FOCUS file.
    "api": CORE + ["store", "audit", "proposals", "config", "identity", "telemetry", "notify",
                   "report", "chart"],
    "ui": CORE + ["store", "audit", "proposals", "config", "identity", "telemetry"],
    "service": CORE
    + ["store", "audit", "proposals", "execute", "markets", "sources", "config", "identity",
       "notify", "telemetry", "report"],
    "dburl": [],      # database URLs (backend, redaction): used by config and store
    "chart": [],      # SVG drawing only: used by the CLI and the console
    "startup": None,  # the composition root: anything
    "cli": None,      # the CLI: anything
    "main": None,
}

# Imports against the rules that exist today, each to be removed (issue 26). Listed so that
# CI passes while they are being removed, and printed on every run; --strict fails on them.
KNOWN: set = set()

# Calls the core must never make (rule 3), as regular expressions on code without comments.
FORBIDDEN_CALLS = [
    r"\bstd::fs\b", r"\bFile::(open|create)\b", r"\bread_dir\b", r"\bUtc::now\b",
    r"\bLocal::now\b", r"\bInstant::now\b", r"\bSystemTime\b", r"\bstd::env\b",
    r"\benv::var\b", r"\bstd::net\b", r"\bstd::process\b", r"\bstd::io::std(in|out|err)\b",
    r"\bIsTerminal\b", r"\bindicatif\b", r"\btokio\b",
]

# Calls against rule 3 that exist today, (module, call), to be removed (issue 26).
KNOWN_CALLS = {
}

# Crates the core must never depend on (prefix match on the crate name).
FORBIDDEN_IN_CORE = [
    "tokio", "sqlx", "hyper", "axum", "tower", "reqwest", "rustls", "aws-", "azure",
    "indicatif", "mio",
]

COMMENT = re.compile(r"//[^\n]*")
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
CRATE_PATH = re.compile(r"\b(?:crate|commitd_core)::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{")


def strip(text):
    """Source without comments and string literals (line numbers kept)."""
    keep_lines = lambda m: "\n" * m.group(0).count("\n")
    text = BLOCK_COMMENT.sub(keep_lines, text)
    text = STRING.sub('""', text)
    return COMMENT.sub("", text)


def group_roots(text, start):
    """Top-level names of a `use crate::{...}` group whose `{` is at `start`."""
    depth, i, token, roots, at_top = 0, start, "", [], True
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
            if depth == 1:
                at_top, token = True, ""
            else:
                at_top = False
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1 and c == ",":
            if token and at_top:
                roots.append(token)
            at_top, token = True, ""
        elif depth == 1 and at_top:
            if c.isalnum() or c == "_":
                token += c
            elif token:
                roots.append(token)
                at_top, token = False, ""
        i += 1
    if token and at_top:
        roots.append(token)
    return roots


def imports(path):
    """(line, module) for every `crate::module` the file names."""
    text = strip(open(path, encoding="utf-8").read())
    found = []
    for m in CRATE_PATH.finditer(text):
        found.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    for m in USE_GROUP.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        for root in group_roots(text, m.end() - 1):
            if root != "self":
                found.append((line, root))
    return found


def module_of(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def check_crate(label, src, rules, known_seen):
    errors = []
    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            module = module_of(src, path)
            if module == "lib":
                continue
            if module not in rules:
                errors.append(f"{os.path.relpath(path, ROOT)}: module `{module}` has no row "
                              f"in .ci/layout.py ({label}): add one with what it may use")
                continue
            allowed = rules[module]
            if allowed is None:
                continue
            for line, target in imports(path):
                if target == module or target in allowed:
                    continue
                key = (label, module, target)
                where = f"{os.path.relpath(path, ROOT)}:{line}: {module} -> {target}"
                if key in KNOWN:
                    known_seen.setdefault(key, where)
                else:
                    errors.append(f"{where} (allowed: {', '.join(allowed) or 'nothing'})")
    return errors


def call_checks(src, known_seen):
    """Rule 3: the core's sources make none of FORBIDDEN_CALLS."""
    errors = []
    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            module = module_of(src, path)
            text = strip(open(path, encoding="utf-8").read())
            for pattern in FORBIDDEN_CALLS:
                for m in re.finditer(pattern, text):
                    line = text.count("\n", 0, m.start()) + 1
                    where = f"{os.path.relpath(path, ROOT)}:{line}: {module} calls {m.group(0)}"
                    if (module, m.group(0)) in KNOWN_CALLS:
                        known_seen.setdefault(("core", module, m.group(0)), where)
                    else:
                        errors.append(f"{where}: the core never reads a file, the clock, the "
                                      "environment or the network; take it as a parameter")
    return errors


def cargo_checks():
    errors = []
    cmd = ["cargo", "tree", "-p", "commitd-core", "-e", "normal", "--prefix", "none",
           "--format", "{p}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return [f"`{' '.join(cmd)}` failed: {out.stderr.strip()}"]
    names = sorted({line.split()[0] for line in out.stdout.splitlines() if line.strip()})
    for n in names:
        if any(n == f or n.startswith(f) for f in FORBIDDEN_IN_CORE):
            errors.append(f"commitd-core depends on `{n}` (cargo tree -p commitd-core -e normal "
                          f"-i {n} shows through what)")
    print(f"layout: commitd-core has {len(names)} normal dependencies, none forbidden"
          if not errors else "layout: commitd-core's dependencies break the rules")
    return errors


def main():
    strict = "--strict" in sys.argv
    known_seen = {}
    errors = check_crate("core", os.path.join(ROOT, "crates/commitd-core/src"), CORE_RULES,
                         known_seen)
    errors += check_crate("commitd", os.path.join(ROOT, "src"), SERVICE_RULES, known_seen)
    errors += call_checks(os.path.join(ROOT, "crates/commitd-core/src"), known_seen)
    for key, where in sorted(known_seen.items()):
        print(f"layout: known exception (issue 26), to remove: {where}")
    known = KNOWN | {("core", m, c) for m, c in KNOWN_CALLS}
    for label, module, target in sorted(known - set(known_seen)):
        print(f"layout: known exception {module} -> {target} ({label}) no longer occurs: "
              "remove it from KNOWN in .ci/layout.py")
    if strict:
        errors += [f"known exception: {w}" for w in known_seen.values()]
    if "--no-cargo" not in sys.argv:
        errors += cargo_checks()
    for e in errors:
        print(f"layout: {e}", file=sys.stderr)
    if errors:
        print(f"layout: {len(errors)} violation(s) of the dependency rules "
              "(docs/ARCHITECTURE.md)", file=sys.stderr)
        return 1
    print("layout: imports follow the rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
