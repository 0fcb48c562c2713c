"""What the CPU is and computes natively, from /proc/cpuinfo (torch-free: the campaign's own process reads it)."""

from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86's flags, and Arm's Features (FEAT_BF16: Graviton3, Grace)


def first_value(prefixes, cpuinfo="/proc/cpuinfo"):
    """The value of the first /proc/cpuinfo line starting with one of ``prefixes`` ("" where none or unreadable)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ""
    return next((line.partition(":")[2].strip() for line in text.splitlines() if line.startswith(prefixes)), "")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (empty where /proc/cpuinfo does not list them)."""
    return set(first_value(("flags", "Features"), cpuinfo).split())


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"), else the platform's word."""
    import platform

    return first_value(("model name",), cpuinfo) or platform.processor() or platform.machine()


def native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU computes bf16 itself (AMX or AVX-512 bf16; Arm's bf16 instructions). Elsewhere torch emulates it: bf16 autocast trained
    a ResNet-20 19x slower than fp32 on a 2-core AMD EPYC with AVX2 only (12 against 224 img/s, one thread)."""
    return bool(cpu_flags(cpuinfo) & set(NATIVE_BF16_FLAGS))
