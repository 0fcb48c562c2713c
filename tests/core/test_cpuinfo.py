"""cosinegate.cpuinfo: which CPUs compute bf16 themselves, and the CPU's name, from /proc/cpuinfo's text."""

from cosinegate.cpuinfo import cpu_flags, cpu_name, native_bf16

XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma f16c\n"


def test_native_bf16_needs_amx_or_avx512_bf16(tmp_path):
    (tmp_path / "xeon").write_text(XEON)
    (tmp_path / "epyc").write_text(EPYC)
    (tmp_path / "avx512").write_text(XEON.replace(" avx512_bf16 amx_bf16 amx_tile", ""))
    assert native_bf16(tmp_path / "xeon") and not native_bf16(tmp_path / "epyc") and not native_bf16(tmp_path / "avx512")
    assert not native_bf16(tmp_path / "missing") and cpu_flags(tmp_path / "missing") == set()
    (tmp_path / "graviton3").write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n")
    (tmp_path / "orin").write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n")
    assert native_bf16(tmp_path / "graviton3") and not native_bf16(tmp_path / "orin")  # Arm lists FEAT_BF16 as bf16
    assert cpu_name(tmp_path / "epyc") == "AMD EPYC" and cpu_name(tmp_path / "xeon").startswith("Intel(R) Xeon(R) Platinum")
    assert cpu_name(tmp_path / "missing")  # the platform's word, never empty

