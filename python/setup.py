"""Builds lmpress._lmpress against liblmpress (metadata: pyproject.toml).

liblmpress is found, in this order:
  1. $LMPRESS_PREFIX: an install prefix with include/lmpress.h and lib*/liblmpress.so
  2. pkg-config lmpress (PKG_CONFIG_PATH may point at PREFIX/lib/pkgconfig)
  3. this checkout: ../include/lmpress.h and ../build/liblmpress.so
The extension is linked with an rpath to the library's directory, so
`import lmpress` needs no LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent


class NotFound(Exception):
    pass


def _fail(msg: str) -> None:
    sys.stderr.write(f"\nerror: lmpress Python package: {msg}\n\n")
    raise SystemExit(1)


def _lib_dirs_under(prefix: Path) -> list[Path]:
    """lib, lib64, lib/x86_64-linux-gnu, ... under prefix, holding liblmpress.so."""
    found = []
    for d in sorted(prefix.glob("lib*")) + sorted(prefix.glob("lib*/*")):
        if d.is_dir() and (d / "liblmpress.so").exists():
            found.append(d)
    return found


def from_prefix(prefix: str) -> dict:
    p = Path(prefix).expanduser().resolve()
    header = p / "include" / "lmpress.h"
    if not header.is_file():
        _fail(f"LMPRESS_PREFIX={prefix}: no {header}")
    libs = _lib_dirs_under(p)
    if not libs:
        _fail(f"LMPRESS_PREFIX={prefix}: no liblmpress.so in {p}/lib*/ (nor lib*/*/)")
    return {
        "source": f"LMPRESS_PREFIX={prefix}",
        "include_dirs": [str(p / "include")],
        "library_dirs": [str(libs[0])],
        "libraries": ["lmpress"],
        "extra_compile_args": [],
        "extra_link_args": [],
    }


def from_pkg_config() -> dict | None:
    exe = shutil.which(os.environ.get("PKG_CONFIG", "pkg-config"))
    if not exe:
        return None
    try:
        r = subprocess.run([exe, "--cflags", "--libs", "lmpress"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    if r.returncode != 0:
        return None
    cfg = {"source": "pkg-config lmpress", "include_dirs": [], "library_dirs": [], "libraries": [],
           "extra_compile_args": [], "extra_link_args": []}
    for flag in shlex.split(r.stdout):
        if flag.startswith("-I"):
            cfg["include_dirs"].append(flag[2:])
        elif flag.startswith("-L"):
            cfg["library_dirs"].append(flag[2:])
        elif flag.startswith("-l"):
            cfg["libraries"].append(flag[2:])
        elif flag.startswith("-Wl,") or flag.startswith("-pthread"):
            cfg["extra_link_args"].append(flag)
        else:
            cfg["extra_compile_args"].append(flag)
    if "lmpress" not in cfg["libraries"]:
        cfg["libraries"].append("lmpress")
    # Relative dirs (a .pc with ${pcfiledir}) made absolute; the header checked.
    cfg["include_dirs"] = [str(Path(d).resolve()) for d in cfg["include_dirs"]]
    cfg["library_dirs"] = [str(Path(d).resolve()) for d in cfg["library_dirs"]]
    dirs = cfg["include_dirs"] + ["/usr/include", "/usr/local/include"]
    if not any((Path(d) / "lmpress.h").is_file() for d in dirs):
        _fail(f"pkg-config lmpress gave {r.stdout.strip()!r}, but no lmpress.h is in {dirs}")
    return cfg


def from_checkout() -> dict | None:
    header = CHECKOUT / "include" / "lmpress.h"
    lib = CHECKOUT / "build" / "liblmpress.so"
    if not (header.is_file() and lib.exists()):
        return None
    return {
        "source": f"the checkout {CHECKOUT}",
        "include_dirs": [str(header.parent)],
        "library_dirs": [str(lib.resolve().parent)],
        "libraries": ["lmpress"],
        "extra_compile_args": [],
        "extra_link_args": [],
    }


def find_lmpress() -> dict:
    prefix = os.environ.get("LMPRESS_PREFIX")
    if prefix:
        return from_prefix(prefix)
    cfg = from_pkg_config() or from_checkout()
    if cfg is None:
        _fail(
            "liblmpress not found. Set LMPRESS_PREFIX to an install prefix (with include/lmpress.h and "
            "lib/liblmpress.so), or make `pkg-config --cflags --libs lmpress` work (PKG_CONFIG_PATH="
            "PREFIX/lib/pkgconfig), or build the library in this checkout first "
            f"({CHECKOUT}/build/liblmpress.so, with {CHECKOUT}/include/lmpress.h)."
        )
    return cfg


def header_version(include_dirs: list[str]) -> str:
    h = header_path(include_dirs)
    m = re.search(r'#define\s+LMPRESS_VERSION\s+"([^"]+)"', Path(h).read_text()) if h else None
    return m.group(1) if m else "0.0.0"


def header_path(include_dirs: list[str]) -> str | None:
    for d in include_dirs + ["/usr/include", "/usr/local/include"]:
        h = Path(d) / "lmpress.h"
        if h.is_file():
            return str(h)
    return None


def extension(cfg: dict):
    rpath = [f"-Wl,-rpath,{d}" for d in cfg["library_dirs"]]
    kw = dict(
        include_dirs=cfg["include_dirs"],
        library_dirs=cfg["library_dirs"],
        libraries=cfg["libraries"],
        extra_compile_args=cfg["extra_compile_args"],
        extra_link_args=cfg["extra_link_args"] + rpath,
        depends=[h for h in [header_path(cfg["include_dirs"])] if h],
    )
    try:
        from pybind11.setup_helpers import Pybind11Extension, build_ext
    except ImportError:
        # No pybind11 Python package (a Python other than the system's): the
        # headers of Debian's pybind11-dev will do.
        if not Path("/usr/include/pybind11/pybind11.h").is_file():
            _fail("pybind11 not found: install it (Debian: python3-pybind11 or pybind11-dev)")
        from setuptools import Extension
        from setuptools.command.build_ext import build_ext

        kw["extra_compile_args"] = ["-std=c++17", "-fvisibility=hidden"] + kw["extra_compile_args"]
        return Extension("lmpress._lmpress", ["lmpress/_lmpress.cpp"], language="c++", **kw), _always(build_ext)
    return Pybind11Extension("lmpress._lmpress", ["lmpress/_lmpress.cpp"], cxx_std=17, **kw), _always(build_ext)


def _always(build_ext):
    """build_ext that always compiles: pip reuses ./build between installs, and a
    module left there from another liblmpress (another prefix, or before the
    header changed) would otherwise be installed as it is."""

    class BuildExt(build_ext):
        def finalize_options(self):
            super().finalize_options()
            self.force = True

    return BuildExt


cfg = find_lmpress()
if not any(a in sys.argv for a in ("egg_info", "dist_info", "--version", "--name")):
    print(f"lmpress: using liblmpress from {cfg['source']} (lib: {cfg['library_dirs'] or 'system'})")
ext, build_ext_cls = extension(cfg)

setup(
    version=header_version(cfg["include_dirs"]),
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext_cls},
    zip_safe=False,
)
