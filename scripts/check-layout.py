#!/usr/bin/env python3
"""The code's layout, checked: no file in src/ is longer than MAX_LINES,
no folder of src/ imports one above it in the README's dependency order
(the line starting "Dependency order:"), and every `src/...` path the
README and docs/ name exists. Doc comments, and test code (`tests.rs`
files and what follows `#[cfg(test)]`), are not imports.

Run by .ci/run; prints every breach and exits 1 if there is one."""
import os
import re
import sys

MAX_LINES = 420
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")


def order_from_readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("Dependency order:"):
                return re.findall(r"`(\w+)`", line)
    sys.exit("check-layout: README.md has no line starting 'Dependency order:'")


def unit_of(path):
    first = os.path.relpath(path, SRC).split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def top_level_names(body):
    """The first path segment of each item of a `{...}` use list."""
    names, depth, current = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == ",":
            names.append(current)
            current = ""
        elif depth == 0:
            current += ch
    names.append(current)
    return [n.strip().split("::")[0].strip() for n in names if n.strip()]


def imports(text):
    """Top-level modules of the crate that `text` names."""
    code = "\n".join(
        line for line in text.split("\n") if not line.lstrip().startswith("//")
    )
    cut = code.find("#[cfg(test)]")
    if cut >= 0:
        code = code[:cut]
    found = set(re.findall(r"crate::(\w+)", code))
    for m in re.finditer(r"crate::\{", code):
        depth, k = 1, m.end()
        while depth and k < len(code):
            depth += {"{": 1, "}": -1}.get(code[k], 0)
            k += 1
        found.update(top_level_names(code[m.end() : k - 1]))
    return found


def stale_doc_paths():
    """`src/...` paths named in the README and docs/ that do not exist."""
    docs = [os.path.join(ROOT, "README.md")]
    docs += sorted(
        os.path.join(ROOT, "docs", n)
        for n in os.listdir(os.path.join(ROOT, "docs"))
        if n.endswith(".md")
    )
    stale = []
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for path in sorted(set(re.findall(r"\bsrc/[\w/]*\w(?:\.rs)?/?", text))):
            if not os.path.exists(os.path.join(ROOT, path)):
                stale.append(f"{os.path.relpath(doc, ROOT)} names {path}, which does not exist")
    return stale


def main():
    order = order_from_readme()
    rank = {name: i for i, name in enumerate(order)}
    breaches = stale_doc_paths()
    for folder, _, files in os.walk(SRC):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, ROOT)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            lines = text.count("\n")
            if lines > MAX_LINES:
                breaches.append(f"{rel}: {lines} lines (at most {MAX_LINES})")
            if name == "tests.rs" or "/tests/" in rel:
                continue
            unit = unit_of(path)
            if unit not in rank:
                breaches.append(f"{rel}: `{unit}` is not in the README's dependency order")
                continue
            for dep in sorted(imports(text)):
                if dep == unit or dep not in rank:
                    continue
                if rank[dep] < rank[unit]:
                    breaches.append(
                        f"{rel}: `{unit}` imports `{dep}`, which is above it in the dependency order"
                    )
    for b in breaches:
        print(f"check-layout: {b}")
    if breaches:
        sys.exit(1)
    print(
        f"check-layout: ok ({len(order)} modules in order, files at most {MAX_LINES} lines, doc paths exist)"
    )


if __name__ == "__main__":
    main()
