"""tegrastats parsing on recorded lines, power summaries, the sampler and read_power_mode."""

import statistics
import subprocess

import pytest

from cosinegate.bench import tegrastats
from cosinegate.bench.tegrastats import TegrastatsSampler, parse_line, read_power_mode, summarize_power
from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import load_target

# Recorded lines. Sources:
# [DD] DataDog/datadog-agent pkg/collector/corechecks/nvidia/jetson/jetson_test.go
#      (orinSample, r36Sample, voltageUnitSample, xavierNxSample, agXSample).
# [BZ] henrygd/beszel agent/gpu_test.go, TestParseJetsonData ("orin nano" and the Orin Nano
#      line reported in henrygd/beszel issue #286).
# [XC] a public Jetson metrics exporter's JetsonXavierCollector docstring, found through the
#      code search index (the index did not name the repository); its three lines joined.
AGX_ORIN_JP5 = (  # [DD] orinSample: AGX Orin 64 GB, 12 cores
    "RAM 2448/62840MB (lfb 2x4MB) SWAP 0/31420MB (cached 0MB) CPU [0%@2201,0%@2201,0%@2201,"
    "0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201] GR3D_FREQ 0% "
    "cpu@42C soc2@37.843C soc0@39.187C gpu@37.75C tj@42C soc1@37.937C VDD_GPU_SOC 4940mW/4940mW "
    "VDD_CPU_CV 988mW/988mW VIN_SYS_5V0 4442mW/4442mW"
)
AGX_ORIN_JP6 = (  # [DD] r36Sample: AGX Orin 32 GB on L4T r36, irregular spacing as recorded
    "RAM 29114/30697MB (lfb 3x4MB)    SWAP 4915/15348MB (cached 1MB) CPU [3%@729,4%@729,0%@729,"
    "1%@729,0%@2201,100%@2201,1%@2201,0%@2201,100%@2201,0%@2201,0%@2201,0%@2201] EMC_FREQ 1%@2133 "
    "GR3D_FREQ 0%@[305,305] NVENC      off  NVDEC    off NVJPG off NVJPG1    off         VIC        "
    "off          OFA           off          NVDLA0    off       NVDLA1     off          PVA0_FREQ "
    "off         APE           174        cpu@53.062C soc2@48.25C soc0@48.843C  gpu@47.812C "
    "tj@53.062C soc1@48.968C    VDD_GPU_SOC 3205mW/3205mW VDD_CPU_CV 4405mW/4405mW "
    "VIN_SYS_5V0 4767mW/4767mW"
)
ORIN_NANO_JP6 = (  # [BZ] "orin nano"
    "06-18-2025 11:25:24 RAM 3452/7620MB (lfb 25x4MB) SWAP 1518/16384MB (cached 174MB) "
    "CPU [1%@1420,2%@1420,0%@1420,2%@1420,2%@729,1%@729] GR3D_FREQ 0% cpu@50.031C soc2@49.031C "
    "soc0@50C gpu@49.031C tj@50.25C soc1@50.25C VDD_IN 4824mW/4824mW VDD_CPU_GPU_CV 518mW/518mW "
    "VDD_SOC 1475mW/1475mW"
)
ORIN_NANO_JP6_BUSY = (  # [BZ] "more valid data", the Orin Nano from issue #286
    "11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
    "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@53.968C soc2@52.437C soc0@50.75C "
    "gpu@53.343C tj@53.968C soc1@51.656C VDD_IN 12479mW/12479mW VDD_CPU_GPU_CV 4667mW/4667mW "
    "VDD_SOC 2817mW/2817mW"
)
ORIN_NX_JP5 = (  # [DD] voltageUnitSample: 8 cores, 15388 MB, CV0..CV2 sensors -> Orin NX 16 GB
    "RAM 6334/15388MB (lfb 1770x4MB) SWAP 491/7694MB (cached 0MB) CPU [6%@729,9%@729,5%@729,"
    "16%@729,off,off,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@611 VIC_FREQ 729 APE 174 "
    "CV0@45.812C CPU@47.937C SOC2@46.093C SOC0@46.968C CV1@46.406C GPU@45.875C tj@48.875C "
    "SOC1@48.875C CV2@45.75C VDD_IN 5299mW/5299mW VDD_CPU_GPU_CV 773mW/773mW VDD_SOC 1424mW/1424mW"
)
XAVIER_NX_JP5 = (  # [XC]
    "RAM 2690/6854MB (lfb 6x1MB) SWAP 479/3427MB (cached 3MB) CPU [3%@1904,7%@1906,1%@1905,"
    "0%@1907,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 0%@[510] VIC_FREQ 601 APE 150 AUX@39C "
    "CPU@39.5C AO@37.5C GPU@37.5C PMIC@50C VDD_IN 5079mW/5079mW VDD_CPU_GPU_CV 696mW/696mW "
    "VDD_SOC 1104mW/1104mW"
)
XAVIER_NX_JP4 = (  # [DD] xavierNxSample
    "RAM 4412/7772MB (lfb 237x4MB) SWAP 139/3886MB (cached 2MB) CPU [9%@1190,6%@1190,6%@1190,"
    "5%@1190,4%@1190,8%@1267] EMC_FREQ 10%@1600 GR3D_FREQ 62%@306 APE 150 MTS fg 0% bg 0% "
    "AO@41.5C GPU@43C PMIC@100C AUX@41.5C CPU@43.5C thermal@42.55C VDD_IN 4067/4067 "
    "VDD_CPU_GPU_CV 738/738 VDD_SOC 1353/1353"
)
AGX_XAVIER_JP4 = (  # [DD] agXSample
    "RAM 721/31927MB (lfb 7291x4MB) SWAP 0/15963MB (cached 0MB) CPU [2%@1190,0%@1190,0%@1190,"
    "0%@1190,off,off,off,off] EMC_FREQ 0%@665 GR3D_FREQ 0%@318 APE 150 MTS fg 0% bg 0% "
    "AO@37.5C GPU@37.5C Tdiode@40C PMIC@100C AUX@36C CPU@37.5C thermal@36.9C Tboard@37C "
    "GPU 0/0 CPU 311/311 SOC 932/932 CV 0/0 VDDRQ 621/621 SYS5V 1482/1482"
)
# Constructed, not recorded: newer tegrastats prints current/average/maximum and temperature pairs.
THREE_VALUE = (
    "RAM 8182/62817MB (lfb 6x4MB) CPU [18%@729,12%@729] GR3D_FREQ 5% cpu@51.343C/51.343C "
    "VDD_GPU_SOC 3588mW/3500mW/3600mW VDD_CPU_CV 797mW/790mW/800mW VIN_SYS_5V0 5148mW/5100mW/5200mW"
)


def test_agx_orin_jetpack5_line():
    parsed = parse_line(AGX_ORIN_JP5)
    assert (parsed["ram_used_mb"], parsed["ram_total_mb"]) == (2448, 62840)
    assert (parsed["swap_used_mb"], parsed["swap_total_mb"]) == (0, 31420)
    assert parsed["cpu_load_percent"] == [0] * 12
    assert parsed["cpu_freq_mhz"] == [2201] * 12
    assert parsed["gpu_load_percent"] == 0
    assert parsed["gpu_freq_mhz"] == []
    assert parsed["temperatures_c"] == {
        "cpu": 42.0, "soc2": 37.843, "soc0": 39.187, "gpu": 37.75, "tj": 42.0, "soc1": 37.937,
    }
    assert parsed["power_mw"] == {
        "VDD_GPU_SOC": (4940, 4940), "VDD_CPU_CV": (988, 988), "VIN_SYS_5V0": (4442, 4442),
    }
    assert parsed["timestamp"] is None


def test_agx_orin_jetpack6_line_with_irregular_spacing():
    parsed = parse_line(AGX_ORIN_JP6)
    assert parsed["ram_used_mb"] == 29114
    assert parsed["swap_used_mb"] == 4915
    assert parsed["cpu_load_percent"][5] == 100 and parsed["cpu_load_percent"][8] == 100
    assert parsed["gpu_freq_mhz"] == [305, 305]
    assert parsed["temperatures_c"]["tj"] == 53.062
    assert parsed["power_mw"]["VDD_CPU_CV"] == (4405, 4405)
    assert set(parsed["power_mw"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}


def test_orin_nano_lines():
    idle = parse_line(ORIN_NANO_JP6)
    assert idle["timestamp"] == "06-18-2025 11:25:24"
    assert idle["cpu_freq_mhz"] == [1420, 1420, 1420, 1420, 729, 729]
    assert idle["power_mw"] == {
        "VDD_IN": (4824, 4824), "VDD_CPU_GPU_CV": (518, 518), "VDD_SOC": (1475, 1475),
    }
    busy = parse_line(ORIN_NANO_JP6_BUSY)
    assert busy["gpu_load_percent"] == 63
    assert busy["gpu_freq_mhz"] == [621]
    assert busy["ram_used_mb"] == 6185
    assert busy["power_mw"]["VDD_IN"] == (12479, 12479)


def test_orin_nx_line_drops_nothing_real_and_keeps_off_cores():
    parsed = parse_line(ORIN_NX_JP5)
    assert parsed["cpu_load_percent"] == [6, 9, 5, 16, None, None, None, None]
    assert parsed["gpu_freq_mhz"] == [611]
    assert parsed["temperatures_c"]["CV0"] == 45.812
    assert parsed["power_mw"]["VDD_IN"] == (5299, 5299)
    assert "VIC_FREQ" not in parsed["power_mw"] and "APE" not in parsed["power_mw"]


def test_xavier_nx_lines_with_and_without_units():
    jp5 = parse_line(XAVIER_NX_JP5)
    assert jp5["cpu_load_percent"] == [3, 7, 1, 0, None, None]
    assert jp5["gpu_freq_mhz"] == [510]
    assert jp5["temperatures_c"]["PMIC"] == 50.0
    assert jp5["power_mw"] == {
        "VDD_IN": (5079, 5079), "VDD_CPU_GPU_CV": (696, 696), "VDD_SOC": (1104, 1104),
    }
    jp4 = parse_line(XAVIER_NX_JP4)
    assert jp4["gpu_load_percent"] == 62 and jp4["gpu_freq_mhz"] == [306]
    assert jp4["temperatures_c"]["thermal"] == 42.55
    assert jp4["power_mw"] == {
        "VDD_IN": (4067, 4067), "VDD_CPU_GPU_CV": (738, 738), "VDD_SOC": (1353, 1353),
    }


def test_agx_xavier_jetpack4_rails_and_no_ram_as_rail():
    parsed = parse_line(AGX_XAVIER_JP4)
    assert parsed["power_mw"] == {
        "GPU": (0, 0), "CPU": (311, 311), "SOC": (932, 932), "CV": (0, 0),
        "VDDRQ": (621, 621), "SYS5V": (1482, 1482),
    }
    assert parsed["temperatures_c"]["Tdiode"] == 40.0


def test_three_value_rails_take_current_and_average():
    parsed = parse_line(THREE_VALUE)
    assert parsed["power_mw"]["VDD_GPU_SOC"] == (3588, 3500)
    assert parsed["temperatures_c"]["cpu"] == 51.343


def test_sensor_off_and_single_value_rails():
    parsed = parse_line("GR3D_FREQ 5%@[1300] CV0@-256C GPU@40C VDD_IN 5765mW VDD_SOC 1497mW")
    assert parsed["temperatures_c"] == {"GPU": 40.0}
    assert parsed["power_mw"] == {"VDD_IN": (5765, 5765), "VDD_SOC": (1497, 1497)}
    assert parsed["ram_used_mb"] is None and parsed["cpu_load_percent"] == []


@pytest.mark.parametrize(
    "target, line",
    [("jetson-orin", AGX_ORIN_JP5), ("jetson-orin-nano", ORIN_NANO_JP6),
     ("jetson-orin-nx", ORIN_NX_JP5), ("jetson-xavier-nx", XAVIER_NX_JP5),
     ("jetson-agx-xavier", AGX_XAVIER_JP4)],
)
def test_profile_rails_are_in_that_boards_output(target, line):
    profile = load_target(target)
    rails = parse_line(line)["power_mw"]
    assert set(profile.total_power_rails) <= set(rails)
    assert set(profile.detail_power_rails) <= set(rails)


def test_summarize_power_means_and_energy_per_image():
    samples = [parse_line(ORIN_NANO_JP6), parse_line(ORIN_NANO_JP6_BUSY)]
    summary = summarize_power(samples, ["VDD_IN"], images=100, seconds=2.0)
    assert summary["samples"] == 2
    assert summary["rails_mean_mw"]["VDD_IN"] == pytest.approx((4824 + 12479) / 2)
    assert summary["total_mean_w"] == pytest.approx(8.6515)
    assert summary["energy_j"] == pytest.approx(17.303)
    assert summary["energy_per_image_j"] == pytest.approx(0.17303)


def test_summarize_power_reports_detail_rails_one_by_one():
    samples = [parse_line(ORIN_NANO_JP6), parse_line(ORIN_NANO_JP6_BUSY)]
    summary = summarize_power(samples, ["VDD_IN"], detail=["VDD_SOC", "VDD_CPU_GPU_CV", "NOT_THERE"])
    assert list(summary["detail_mean_mw"]) == ["VDD_SOC", "VDD_CPU_GPU_CV"]  # a rail these lines lack is left out
    assert summary["detail_mean_mw"]["VDD_SOC"] == pytest.approx(statistics.fmean(s["power_mw"]["VDD_SOC"][0] for s in samples))
    assert summary["total_mean_w"] == pytest.approx(summary["rails_mean_mw"]["VDD_IN"] / 1000)  # the detail is not summed


def test_summarize_power_sums_agx_orin_rails():
    summary = summarize_power([parse_line(AGX_ORIN_JP5)], ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"])
    assert summary["total_mean_w"] == pytest.approx(10.37)
    assert summary["energy_j"] is None and summary["energy_per_image_j"] is None


def test_summarize_power_names_missing_rail_and_what_was_seen():
    with pytest.raises(CosineGateError, match=r"VDD_IN.*VDD_CPU_CV.*root"):
        summarize_power([parse_line(AGX_ORIN_JP5)], ["VDD_IN"])
    with pytest.raises(CosineGateError, match="no tegrastats samples"):
        summarize_power([], ["VDD_IN"])


def test_sampler_without_tegrastats_says_it_needs_a_jetson(monkeypatch):
    monkeypatch.setattr(tegrastats.shutil, "which", lambda name: None)
    sampler = TegrastatsSampler(interval_ms=50)
    with pytest.raises(CosineGateError, match="only on a Jetson"):
        with sampler:
            pass


def test_sampler_collects_lines_from_a_fake_tegrastats(tmp_path, monkeypatch):
    fake = tmp_path / "tegrastats"
    fake.write_text(
        "#!/bin/sh\n"
        f"echo '{ORIN_NANO_JP6}'\n"
        f"echo '{ORIN_NANO_JP6_BUSY}'\n"
        "exec sleep 30\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with TegrastatsSampler(interval_ms=50) as sampler:
        for _ in range(200):
            if len(sampler.lines) == 2:
                break
            subprocess.run(["sleep", "0.01"])
    assert sampler._process.poll() is not None
    assert len(sampler.lines) == 2
    summary = sampler.summary(["VDD_IN"], images=10, seconds=1.0)
    assert summary["energy_per_image_j"] == pytest.approx(0.86515)


def test_read_power_mode_without_tools(monkeypatch):
    monkeypatch.setattr(tegrastats.shutil, "which", lambda name: None)
    assert read_power_mode() == {
        "power_mode": None, "power_mode_id": None, "nvpmodel": None, "jetson_clocks": None,
    }


def test_read_power_mode_parses_nvpmodel(monkeypatch):
    outputs = {"nvpmodel": "NV Power Mode: MAXN\n0\n", "jetson_clocks": None}

    def fake_run(command, **kwargs):
        text = outputs[command[0]]
        return subprocess.CompletedProcess(command, 0 if text else 1, stdout=text or "", stderr="")

    monkeypatch.setattr(tegrastats.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(tegrastats.subprocess, "run", fake_run)
    mode = read_power_mode()
    assert mode["power_mode"] == "MAXN"
    assert mode["power_mode_id"] == 0
    assert mode["jetson_clocks"] is None
