"""What this x86 CPU can really execute, found by running one instruction of each extension.

/proc/cpuinfo (CPUID) is not enough: a hypervisor can report AMX while the kernel or the host
never enables its tile state, and the first AMX instruction then dies with SIGILL. Each probe
is compiled with only its own -m flags and run in a child process, so a fault costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import subprocess
import tempfile


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str            # our name, as recorded in the manifest
    cpuinfo: str         # the flag in /proc/cpuinfo
    cflags: tuple[str, ...]
    body: str            # C statements; must use the extension and return 0 on success
    cmake: str           # the GGML_* option it enables


_AMX_PERMISSION = """
#include <sys/syscall.h>
#include <unistd.h>
    /* Linux hands out AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA). */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 3;
"""

_AMX_TILECFG = """
    struct { unsigned char palette, start; unsigned char pad[14]; unsigned short colsb[16];
             unsigned char rows[16]; } __attribute__((aligned(64))) cfg = {0};
    cfg.palette = 1;
    for (int i = 0; i < 3; i++) { cfg.rows[i] = 16; cfg.colsb[i] = 64; }
    _tile_loadconfig(&cfg);
    _tile_zero(0); _tile_zero(1); _tile_zero(2);
"""

FEATURES: tuple[Feature, ...] = (
    Feature("sse4.2", "sse4_2", ("-msse4.2",),
            "volatile unsigned v = 1; return _mm_crc32_u32(v, 7) == 0;", "GGML_SSE42"),
    Feature("avx", "avx", ("-mavx",),
            "volatile float f = 1; __m256 a = _mm256_set1_ps(f); a = _mm256_add_ps(a, a);"
            " return _mm256_cvtss_f32(a) != 2.0f;", "GGML_AVX"),
    Feature("avx2", "avx2", ("-mavx2",),
            "volatile int i = 1; __m256i a = _mm256_set1_epi32(i); a = _mm256_add_epi32(a, a);"
            " return _mm256_extract_epi32(a, 0) != 2;", "GGML_AVX2"),
    Feature("fma", "fma", ("-mfma",),
            "volatile float f = 2; __m128 a = _mm_set1_ps(f); a = _mm_fmadd_ps(a, a, a);"
            " return _mm_cvtss_f32(a) != 6.0f;", "GGML_FMA"),
    Feature("f16c", "f16c", ("-mf16c",),
            "volatile float f = 1; __m128i h = _mm_cvtps_ph(_mm_set1_ps(f), 0);"
            " return _mm_cvtss_f32(_mm_cvtph_ps(h)) != 1.0f;", "GGML_F16C"),
    Feature("bmi2", "bmi2", ("-mbmi2",),
            "volatile unsigned v = 0xF0; return _pdep_u32(v, 0xFF) != 0xF0;", "GGML_BMI2"),
    Feature("avx512", "avx512f",
            ("-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512dq", "-mavx512bw"),
            "volatile int i = 1; __m512i a = _mm512_set1_epi32(i); a = _mm512_add_epi32(a, a);"
            " __m512i b = _mm512_set1_epi16(1); b = _mm512_adds_epi16(b, b);"
            " return _mm512_reduce_add_epi32(a) != 32;", "GGML_AVX512"),
    Feature("avx512_vbmi", "avx512vbmi", ("-mavx512f", "-mavx512vbmi"),
            "volatile char c = 1; __m512i a = _mm512_set1_epi8(c);"
            " a = _mm512_permutexvar_epi8(a, a); return _mm512_reduce_add_epi32(a) == 0;",
            "GGML_AVX512_VBMI"),
    Feature("avx512_vnni", "avx512_vnni", ("-mavx512f", "-mavx512vnni"),
            "volatile char c = 1; __m512i a = _mm512_set1_epi8(c);"
            " __m512i z = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a, a);"
            " return _mm512_reduce_add_epi32(z) != 64;", "GGML_AVX512_VNNI"),
    Feature("avx512_bf16", "avx512_bf16", ("-mavx512f", "-mavx512bf16"),
            "volatile float f = 1; __m512 a = _mm512_set1_ps(f);"
            " __m512bh h = _mm512_cvtne2ps_pbh(a, a);"
            " __m512 z = _mm512_dpbf16_ps(_mm512_setzero_ps(), h, h);"
            " return _mm512_reduce_add_ps(z) != 32.0f;", "GGML_AVX512_BF16"),
    Feature("avx_vnni", "avx_vnni", ("-mavxvnni",),
            "volatile char c = 1; __m256i a = _mm256_set1_epi8(c);"
            " __m256i z = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, a);"
            " return _mm256_extract_epi32(z, 0) != 4;", "GGML_AVX_VNNI"),
    Feature("amx_tile", "amx_tile", ("-mamx-tile",),
            _AMX_PERMISSION + _AMX_TILECFG + " _tile_release(); return 0;", "GGML_AMX_TILE"),
    Feature("amx_int8", "amx_int8", ("-mamx-tile", "-mamx-int8"),
            _AMX_PERMISSION + _AMX_TILECFG + " _tile_dpbssd(0, 1, 2); _tile_release(); return 0;",
            "GGML_AMX_INT8"),
    Feature("amx_bf16", "amx_bf16", ("-mamx-tile", "-mamx-bf16"),
            _AMX_PERMISSION + _AMX_TILECFG + " _tile_dpbf16ps(0, 1, 2); _tile_release(); return 0;",
            "GGML_AMX_BF16"),
)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    reported: tuple[str, ...]   # what CPUID says
    usable: tuple[str, ...]     # what executed correctly
    disabled: dict              # reported but unusable -> why

    def cmake_options(self) -> dict[str, bool]:
        usable = set(self.usable)
        return {f.cmake: f.name in usable for f in FEATURES}


def is_x86() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64", "i686", "i386"}


def _cpuinfo_flags() -> set[str]:
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _run_one(cc: str, feature: Feature, workdir: pathlib.Path) -> str | None:
    """None when the feature works, else why not."""
    src = workdir / f"{feature.name}.c"
    exe = workdir / feature.name
    headers = "#include <immintrin.h>\n" + (
        "#include <sys/syscall.h>\n#include <unistd.h>\n" if "syscall" in feature.body else "")
    body = feature.body.replace("#include <sys/syscall.h>\n#include <unistd.h>\n", "")
    src.write_text(f"{headers}int main(void) {{\n{body}\n}}\n")
    compiled = subprocess.run([cc, "-O0", *feature.cflags, str(src), "-o", str(exe)],
                              capture_output=True, text=True, timeout=60)
    if compiled.returncode != 0:
        return "compiler cannot target it"
    ran = subprocess.run([str(exe)], capture_output=True, timeout=30)
    if ran.returncode == 0:
        return None
    if ran.returncode < 0:
        return f"executing it raised signal {-ran.returncode}"
    return f"probe returned {ran.returncode}"


def probe(cc: str | None = None) -> ProbeResult:
    cc = cc or os.environ.get("CC") or "cc"
    flags = _cpuinfo_flags()
    reported = tuple(f.name for f in FEATURES if f.cpuinfo in flags)
    usable: list[str] = []
    disabled: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="llama-ffi-probe-") as tmp:
        for feature in FEATURES:
            if feature.name not in reported:
                continue
            why = _run_one(cc, feature, pathlib.Path(tmp))
            if why is None:
                usable.append(feature.name)
            else:
                disabled[feature.name] = why
    return ProbeResult(reported, tuple(usable), disabled)
