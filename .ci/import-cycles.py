#!/usr/bin/env python3
"""Finds import circles between the top-level modules of each crate.

A file's module is its first path component under src/ (src/handle/x.rs
belongs to `handle`; lib.rs to the crate root, which is left out: it only
declares and re-exports; test code — files named `*tests.rs` and inline
`#[cfg(test)] mod` blocks — is left out). An edge A -> B is any `crate::B` path in A's
files, including inside grouped `use crate::{B::.., C}` imports, and any
`crate::Name` that lib.rs re-exports from B. Prints
every strongly connected set of more than one module and exits 1 if any.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent


def top_names(group):
    """The first path segment of each item in a `{...}` use group."""
    names, depth, cur = [], 0, ""
    for ch in group:
        if ch == "{":
            depth += 1
            if depth > 1:
                cur += ch
            continue
        if ch == "}":
            depth -= 1
            if depth >= 1:
                cur += ch
            continue
        if ch == "," and depth == 1:
            names.append(cur)
            cur = ""
            continue
        cur += ch
    names.append(cur)
    return [n.strip().split("::")[0].strip() for n in names if n.strip()]


def edges_of(text):
    # Test code is left out: an inline `#[cfg(test)] mod x { .. }` runs to
    # the end of its file by the house convention.
    test = re.search(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*mod \w+ \{", text)
    if test:
        text = text[: test.start()]
    text = re.sub(r"//[^\n]*", "", text)
    out = set()
    for m in re.finditer(r"crate::(\{)?", text):
        start = m.end()
        if m.group(1):
            depth, i = 1, start
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            out.update(top_names("{" + text[start:i]))
        else:
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[start:])
            if name:
                out.add(name.group(0))
    return out


def root_exports(lib):
    """Names lib.rs re-exports, mapped to the module that holds them."""
    exports = {}
    text = re.sub(r"//[^\n]*", "", lib.read_text()) if lib.exists() else ""
    for m in re.finditer(r"pub use ([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;", text):
        module, items = m.group(1), m.group(2)
        names = top_names(items) if items.startswith("{") else [items]
        for name in names:
            exports[name.split(" as ")[-1].strip()] = module
    return exports


def cycles(src):
    exports = root_exports(src / "lib.rs")
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).parts
        if rel == ("lib.rs",) or rel == ("main.rs",) or f.name.endswith("tests.rs"):
            continue
        mod = rel[0][:-3] if rel[0].endswith(".rs") else rel[0]
        mods.setdefault(mod, set()).update(edges_of(f.read_text()))
    graph = {
        m: {exports.get(d, d) for d in deps} & set(mods) - {m} for m, deps in mods.items()
    }
    # Tarjan's strongly connected components.
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


found = False
for manifest in sorted(root.glob("*/Cargo.toml")) + [root / "Cargo.toml"]:
    src = manifest.parent / "src"
    if not src.is_dir():
        continue
    for comp in cycles(src):
        found = True
        print(f"{manifest.parent.name}: import circle among {', '.join(comp)}")
sys.exit(1 if found else 0)
