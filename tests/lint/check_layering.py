#!/usr/bin/env python3
"""Fails when a part of src/ includes a part that docs/design.md's table "Parts and what each may
depend on" does not let it use (directly or through a part it may use): the layering stays what
the design says, and the design stays true.

    check_layering.py REPO_ROOT
"""
import pathlib
import re
import sys


def allowed_parts(design: str, parts: set[str]) -> dict[str, set[str]]:
    section = design.split("## Parts and what each may depend on", 1)[1].split("\n## ", 1)[0]
    direct: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] not in parts:
            continue
        may_use = cells[2]
        if may_use == "everything":
            direct[cells[0]] = set(parts)
        else:
            words = set(re.findall(r"[a-z]+", may_use.split(";")[0]))
            direct[cells[0]] = words & parts
    missing = parts - direct.keys()
    if missing:
        sys.exit(f"docs/design.md: the parts table has no row for {sorted(missing)}")
    closure = {}
    for part in parts:  # what a part may use, through the parts it may use
        seen, todo = set(), list(direct[part])
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(direct[p])
        closure[part] = seen | {part}
    return closure


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    src = root / "src"
    parts = {p.name for p in src.iterdir() if p.is_dir()}
    closure = allowed_parts((root / "docs/design.md").read_text(), parts)
    include = re.compile(r'^\s*#\s*include\s+"([a-z]+)/', re.M)
    bad = []
    for part in sorted(parts):
        for f in sorted((src / part).rglob("*")):
            if f.suffix not in (".h", ".cc"):
                continue
            for used in include.findall(f.read_text(errors="replace")):
                if used in parts and used not in closure[part]:
                    bad.append(f"{f.relative_to(root)}: includes {used}/, which {part} may not use")
    for line in bad:
        print(line)
    print(f"layering: {len(parts)} parts, {len(bad)} includes against docs/design.md's table")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
