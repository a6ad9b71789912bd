"""Shared bits of the benchmark scripts: the machine's description and docs/BENCHMARKS.md sections."""
import datetime
import os
import platform

import torch

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "BENCHMARKS.md")


def machine(device: str) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
    else:
        name = f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    return f"{datetime.date.today()} on {name}, torch {torch.__version__}"


def write_section(title: str, text: str, path: str = DOCS) -> None:
    """Replace (or append) the section '## title' of the benchmarks file, keeping the others."""
    head = "# Benchmarks\n\n"
    old = open(path).read() if os.path.exists(path) else head
    if not old.startswith("# "):
        old = head + old
    parts = old.split("\n## ")
    preamble, sections = parts[0], parts[1:]
    sections = [s for s in sections if not s.startswith(title)]
    sections.append(f"{title}\n\n{text.strip()}\n")
    with open(path, "w") as f:
        f.write(preamble.rstrip("\n") + "\n\n" + "\n".join("## " + s.rstrip("\n") + "\n" for s in sections))
