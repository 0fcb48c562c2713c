"""Read Jetson tegrastats lines and turn power rails into mean power and energy per image.

Line formats handled (all seen in recorded output):

- JetPack 5/6 Orin: ``VDD_GPU_SOC 4940mW/4940mW`` (current/average), temperatures ``cpu@42C``,
  ``GR3D_FREQ 0%`` or ``GR3D_FREQ 63%@[621]``, an optional leading ``MM-DD-YYYY HH:MM:SS``.
- Newer releases add a maximum: ``VDD_GPU_SOC 3588mW/3588mW/3588mW``, ``cpu@51.3C/51.3C``.
- JetPack 4 (Xavier, Nano): no unit, ``GPU 463/463 CPU 618/618`` and ``GR3D_FREQ 0%@318``.

Power rails appear only when tegrastats can read the INA3221 monitors (as root on some boards).
A temperature of -256C is the "sensor off" value and is dropped.
"""

import re
import shutil
import statistics
import subprocess
import threading

from cosinegate.errors import CosineGateError

_TIMESTAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<![\w%])([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C(?=[\s/]|$)")
_RAIL_PAIR = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)?(?=\s|$)")
_RAIL_SINGLE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW(?=\s|$)")
_SENSOR_OFF = -256.0


def parse_line(line):
    """One tegrastats line as a dict; keys whose item the line lacks are None (or empty)."""
    ram = _RAM.search(line)
    swap = _SWAP.search(line)
    timestamp = _TIMESTAMP.match(line)
    return {
        "timestamp": timestamp.group(1) if timestamp else None,
        "ram_used_mb": int(ram.group(1)) if ram else None,
        "ram_total_mb": int(ram.group(2)) if ram else None,
        "swap_used_mb": int(swap.group(1)) if swap else None,
        "swap_total_mb": int(swap.group(2)) if swap else None,
        **_cpu(line),
        **_gpu(line),
        "temperatures_c": _temperatures(line),
        "power_mw": _power(line),
    }


def _cpu(line):
    match = _CPU.search(line)
    loads, freqs = [], []
    if match:
        for core in match.group(1).split(","):
            core = core.strip()
            if core == "off":
                loads.append(None)
                freqs.append(None)
                continue
            load, _, freq = core.partition("@")
            loads.append(int(load.rstrip("%")) if load.rstrip("%").isdigit() else None)
            freqs.append(int(freq) if freq.isdigit() else None)
    return {"cpu_load_percent": loads, "cpu_freq_mhz": freqs}


def _gpu(line):
    match = _GR3D.search(line)
    if not match:
        return {"gpu_load_percent": None, "gpu_freq_mhz": []}
    load, freqs = match.groups()
    return {
        "gpu_load_percent": int(load) if load is not None else None,
        "gpu_freq_mhz": [int(f) for f in freqs.split(",") if f] if freqs else [],
    }


def _temperatures(line):
    temps = {}
    for name, value in _TEMP.findall(line):
        if float(value) != _SENSOR_OFF:
            temps[name] = float(value)
    return temps


def _power(line):
    rails = {name: (int(now), int(avg)) for name, now, avg in _RAIL_PAIR.findall(line)}
    for name, now in _RAIL_SINGLE.findall(line):
        rails.setdefault(name, (int(now), int(now)))
    return rails


def summarize_power(samples, rails, images=None, seconds=None, detail=()):
    """Mean power of ``rails`` over parsed ``samples`` and, given images and seconds, energy per image.

    Returns {"samples", "rails_mean_mw": {rail: mW}, "total_mean_w", "energy_j", "energy_per_image_j",
    "detail_mean_mw": {rail: mW}} where the total sums ``rails`` (pick rails that do not contain each other) and the
    detail holds the mean of each rail of ``detail`` that the samples have, reported one by one.
    """
    if not samples:
        raise CosineGateError(
            "no tegrastats samples were recorded; run longer than the sampling interval."
        )
    if not rails:
        raise CosineGateError("no power rails chosen; name the rails to sum (see the target profile).")
    seen = sorted({rail for sample in samples for rail in sample["power_mw"]})
    means = {}
    for rail in rails:
        values = [s["power_mw"][rail][0] for s in samples if rail in s["power_mw"]]
        if not values:
            raise CosineGateError(
                f"rail {rail} is not in the tegrastats output (seen: {', '.join(seen) or 'no rails'}); "
                "run as root so tegrastats can read the power monitors, or pick rails from that list."
            )
        means[rail] = statistics.fmean(values)
    total_w = sum(means.values()) / 1000.0
    shown = {rail: [s["power_mw"][rail][0] for s in samples if rail in s["power_mw"]] for rail in detail}
    summary = {"samples": len(samples), "rails_mean_mw": means, "total_mean_w": total_w,
               "energy_j": None, "energy_per_image_j": None,
               "detail_mean_mw": {rail: statistics.fmean(values) for rail, values in shown.items() if values}}
    if seconds is not None:
        summary["energy_j"] = total_w * seconds
        if images:
            summary["energy_per_image_j"] = summary["energy_j"] / images
    return summary


class TegrastatsSampler:
    """Run ``tegrastats --interval N`` for the length of a ``with`` block and keep its lines.

    The process starts on entering the block, so building a sampler off Jetson costs nothing.
    """

    def __init__(self, interval_ms=100, binary="tegrastats"):
        self.interval_ms = interval_ms
        self.binary = binary
        self.lines = []
        self._process = None
        self._reader = None

    def __enter__(self):
        path = shutil.which(self.binary)
        if path is None:
            raise CosineGateError(
                f"{self.binary} not found: power is measured only on a Jetson, where JetPack "
                "installs /usr/bin/tegrastats. Run the benchmark on the board, or without power sampling."
            )
        self._process = subprocess.Popen(
            [path, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self):
        for line in self._process.stdout:
            if line.strip():
                self.lines.append(line.rstrip("\n"))

    def __exit__(self, *exc_info):
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
        return False

    def samples(self):
        return [parse_line(line) for line in self.lines]

    def summary(self, rails, images=None, seconds=None, detail=()):
        """Mean power of ``rails`` (and of each ``detail`` rail) and energy per image over the recorded lines."""
        return summarize_power(self.samples(), rails, images, seconds, detail)


def _run_text(command):
    """stdout of ``command`` when its binary exists and it succeeds, else None."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def read_power_mode():
    """nvpmodel and jetson_clocks state; None values where a tool is absent or fails (e.g. not root).

    Returns {"power_mode": name such as "MAXN", "power_mode_id": int, "nvpmodel": raw text,
    "jetson_clocks": raw ``jetson_clocks --show`` text}.
    """
    nvpmodel = _run_text(["nvpmodel", "-q"])
    mode_name, mode_id = None, None
    if nvpmodel:
        named = re.search(r"NV Power Mode:\s*(\S+)", nvpmodel)
        mode_name = named.group(1) if named else None
        numbers = [line.strip() for line in nvpmodel.splitlines() if line.strip().isdigit()]
        mode_id = int(numbers[0]) if numbers else None
    return {
        "power_mode": mode_name,
        "power_mode_id": mode_id,
        "nvpmodel": nvpmodel,
        "jetson_clocks": _run_text(["jetson_clocks", "--show"]),
    }
