"""Shared bits of the benchmark scripts: the machine's description and docs/BENCHMARKS.md sections."""
import datetime
import os
import platform

import torch

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "BENCHMARKS.md")


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> str:
    """Where a benchmark ran, detected (never typed): date, CPU model and cores (and the threads torch
    uses), the GPU when the device is CUDA, and the builds of torch and onnxruntime."""
    cpu = f"{cpu_model()}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)"
    name = f"{torch.cuda.get_device_name(0)} + {cpu}" if device.startswith("cuda") else f"CPU {cpu}"
    try:
        import onnxruntime
        ort = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = ""
    return f"{datetime.date.today()} on {name}, torch {torch.__version__}{ort}"


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
