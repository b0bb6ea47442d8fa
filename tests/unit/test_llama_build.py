"""llama.cpp build options chosen from the CPU, and the setup check that proves the build.

The flag sets are real ``/proc/cpuinfo`` lines (trimmed of unrelated flags) of the three CPU classes
the project has met: an Intel Xeon with AMX (Sapphire Rapids), an AMD Zen 4 (AVX-512, no AMX) and
an AMD Zen 3 (AVX2 only).
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.llama_build import cmake_args, cpu_flags, explain
from harness.selfcheck import run_check

SAPPHIRE_RAPIDS = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx "
                   "fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc "
                   "cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
                   "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 "
                   "hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
                   "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd "
                   "arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni "
                   "avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b md_clear serialize tsxldtrk "
                   "amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities\n")
ZEN4 = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
        "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm rep_good nopl cpuid extd_apicid tsc_known_freq pni "
        "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor "
        "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext fsgsbase bmi1 avx2 smep "
        "bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw "
        "avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr wbnoinvd arat avx512vbmi umip pku "
        "ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm\n")
ZEN3 = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
        "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid "
        "extd_apicid aperfmperf pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c "
        "rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt "
        "tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba ibrs "
        "ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a rdseed adx smap clflushopt clwb "
        "sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local clzero irperf "
        "xsaveerptr rdpru wbnoinvd arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid "
        "decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes "
        "vpclmulqdq rdpid overflow_recov succor smca fsrm\n")


def _opts(cpuinfo: str) -> dict[str, str]:
    args = cmake_args(cpu_flags("processor\t: 0\nvendor_id\t: X\n" + cpuinfo))
    return dict(a[2:].split("=", 1) for a in args)


def test_the_multimodal_library_is_not_built() -> None:
    assert _opts(ZEN3)["LLAVA_BUILD"] == "OFF"


def test_amx_cpu_keeps_avx512_and_turns_amx_off() -> None:
    o = _opts(SAPPHIRE_RAPIDS)
    assert o["GGML_NATIVE"] == "OFF"  # -march=native would compile the crashing AMX path
    assert o["GGML_AMX_TILE"] == o["GGML_AMX_INT8"] == o["GGML_AMX_BF16"] == "OFF"
    for on in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX512_VBMI", "GGML_AVX_VNNI",
               "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"):
        assert o[on] == "ON", on


def test_avx512_only_cpu_gets_avx512_without_amx() -> None:
    o = _opts(ZEN4)
    assert o["GGML_NATIVE"] == "OFF"
    assert o["GGML_AVX512"] == o["GGML_AVX512_VNNI"] == o["GGML_AVX512_BF16"] == "ON"
    assert o["GGML_AVX_VNNI"] == "OFF"  # Zen 4 has AVX512-VNNI but not the VEX-coded AVX-VNNI
    assert o["GGML_AMX_INT8"] == "OFF"


def test_avx2_only_cpu_gets_no_avx512() -> None:
    o = _opts(ZEN3)
    assert o["GGML_AVX2"] == o["GGML_FMA"] == o["GGML_F16C"] == o["GGML_BMI2"] == "ON"
    for off in ("GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX512_VBMI", "GGML_AVX_VNNI",
                "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"):
        assert o[off] == "OFF", off


def test_no_avx_at_all_is_a_plain_sse_build() -> None:
    o = dict(a[2:].split("=", 1) for a in cmake_args({"sse4_2"}))
    assert o["GGML_SSE42"] == "ON" and o["GGML_AVX"] == o["GGML_AVX2"] == "OFF"


def test_non_x86_keeps_the_native_build() -> None:
    assert cmake_args({"asimd", "sve"}, machine="aarch64")[0] == "-DGGML_NATIVE=ON"


def test_explain_names_amx_as_kept_off() -> None:
    line = explain(cpu_flags(SAPPHIRE_RAPIDS), "x86_64")
    assert "AMX" in line and "kept off" in line and "\n" not in line
    assert "AMX" not in explain(cpu_flags(ZEN3), "x86_64")


def test_cli_prints_options_from_a_cpuinfo_file(tmp_path: Path) -> None:
    import subprocess

    f = tmp_path / "cpuinfo"
    f.write_text(SAPPHIRE_RAPIDS)
    out = subprocess.run([sys.executable, "-m", "harness.llama_build", "--cpuinfo", str(f)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert "-DGGML_AMX_INT8=OFF" in out and "-DGGML_AVX512=ON" in out


def test_a_crashing_build_is_one_line_with_the_rebuild_hint() -> None:
    """The check's parent turns a child killed by a signal into one actionable line."""
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    ok, line, details = run_check(command=crash)
    assert not ok and details["signal"] == "SIGSEGV"
    assert "crashed (SIGSEGV)" in line and "LLAMA_CMAKE_ARGS" in line and "\n" not in line


def test_a_failing_check_reports_the_childs_last_line() -> None:
    ok, line, _ = run_check(command=[sys.executable, "-c", "import sys; sys.exit('error: no llama_cpp here')"])
    assert not ok and "no llama_cpp here" in line and "LLAMA_CMAKE_ARGS" in line

