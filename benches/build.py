#!/usr/bin/env python3
"""Build benchmark (SPEC §7, issue 12): wall time, CPU time and peak memory of
`imagesmith build` against the engine's own floors, measured in the same run.

Usage (after scripts/setup.sh and `cargo build --release`):
    python3 benches/build.py [--runs N] [--keep] [--small] [--bin PATH]

It makes its own images (tagged imagesmith-bench/…, removed at the end unless --keep, and
reused when already there):
  kernel  Debian's /boot/vmlinuz + part of /lib/modules as kernel.tar (a LinuxKit kernel)
  init    the host's busybox and /usr/share/doc (a small init, many small files)
  big1    6 × 160 MiB random files + 20,000 small text files (~1 GiB)
  big2    the same shape, other bytes
  small   busybox alone
and two specs: `one` (big1 as init) and `spec` (kernel, init, big1 as onboot, big2 and small
as services). --small divides every size by 10 (a quick check that everything runs).

Cases, each run once per round, the rounds alternating every case (floors included), every
other round in reverse order, each after a `sync` and a 3 s pause:
  floor: one   create + export -> /dev/null + rm of big1 (the engine alone)
  floor: spec  create + export to a file + fsync + rm of every image of `spec`, in turn
               (fsync because imagesmith syncs its output before renaming it)
  floor: spec -> /dev/null   the same to /dev/null
  floor: write  a copy of the spec's tar output + fsync (`shutil.copyfile`: what a plain
               copy of the output costs)
  floor: write direct  a copy of one's / the spec's tar output, read from the page cache,
               written with `dd oflag=direct conv=fsync` (the disk's best for that output:
               the bound of a warm build, which writes its output and little else)
  then imagesmith: `one` as tar to a file; `spec` as tar (default flags, and --jobs 1, 3, 4),
  kernel+initrd (gzip, zstd) and tar.zst.
Columns: median wall, median CPU (user+sys of the command and its children, GNU time),
peak RSS (max over the runs, GNU time %M), output size, and the wall time as a ratio to the
case's floor (and, for compressed outputs, to the `spec` tar build).

Adding a case: append a Case to CASES. Adding a column of variants of the same cases (e.g.
"cache warm", "registry"): append to VARIANTS a name, the extra build arguments, an
optional setup run once before the rounds (e.g. a warm-up build), the cases it applies to
and the spec it uses instead; each such case is then measured under the variant and
printed as its own row. The registry rows build the 1 GiB image with `--source registry`
from a `docker-registry` the benchmark starts on 127.0.0.1 (cold: an empty blob store
each build; cached: blobs and the flattened image already in the cache).
"""
import argparse
import glob
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
PREFIX = "imagesmith-bench"


@dataclass
class Case:
    name: str
    spec: str  # "one" or "spec"
    args: list = field(default_factory=list)
    multi: bool = False  # kernel+initrd: --dir instead of -o
    floor: str = "spec"  # the floor its wall time is divided by
    vs_tar: bool = False  # also divided by the `spec` tar build's


CASES = [
    Case("one 1 GiB image, tar", "one", ["-f", "tar"], floor="one"),
    Case("spec, tar", "spec", ["-f", "tar"]),
    Case("spec, tar --jobs 1", "spec", ["-f", "tar", "--jobs", "1"]),
    Case("spec, tar --jobs 3", "spec", ["-f", "tar", "--jobs", "3"]),
    Case("spec, tar --jobs 4", "spec", ["-f", "tar", "--jobs", "4"]),
    Case("spec, kernel+initrd gzip", "spec", ["-f", "kernel+initrd"], multi=True, vs_tar=True),
    Case("spec, kernel+initrd zstd", "spec",
         ["-f", "kernel+initrd", "--initrd-compression", "zstd"], multi=True, vs_tar=True),
    Case("spec, tar.zst", "spec", ["-f", "tar.zst"], vs_tar=True),
]

def warm_cache(ctx):
    """Fills the warm variant's cache: one build of each spec."""
    for spec in ctx["specs"].values():
        sh(ctx["bin"], "-q", "build", "--cache-dir", os.path.join(ctx["work"], "cache"),
           "-o", os.path.join(ctx["work"], "warmup.tar"), spec)
    os.remove(os.path.join(ctx["work"], "warmup.tar"))


def start_registry(ctx):
    """A `docker-registry` on a free 127.0.0.1 port holding `big1` (pushed with docker), and
    a spec `one-registry` naming it there; stopped when the benchmark ends."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.join(ctx["work"], "registry")
    os.makedirs(root)
    cfg = os.path.join(root, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ctx["cleanup"].append(proc.terminate)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    remote = f"127.0.0.1:{port}/{ctx['names']['big1'].split('/', 1)[1]}"
    sh("docker", "tag", ctx["names"]["big1"], remote)
    ctx["cleanup"].append(lambda: subprocess.run(["docker", "rmi", remote], capture_output=True))
    sh("docker", "push", remote, stdout=subprocess.DEVNULL)
    spec = os.path.join(ctx["work"], "one-registry.yml")
    with open(spec, "w") as f:
        f.write(f"init:\n  - {remote}\n")
    ctx["specs"]["one-registry"] = spec
    # The cached variant's cache, filled once.
    sh(ctx["bin"], "-q", "build", "--source", "registry", "--cache-dir",
       os.path.join(ctx["work"], "regcache"), "-o", os.path.join(ctx["work"], "warmup.tar"), spec)
    os.remove(os.path.join(ctx["work"], "warmup.tar"))


# (name, extra build arguments ({work} is replaced), setup(ctx) or None, the cases it
# applies to or None for all, the spec to use instead of the case's). "engine": every image
# exported (the cache bypassed); "cache warm": every image served from a filled cache;
# "registry cold"/"registry cached": `--source registry` from a local registry, with an
# empty blob store (--no-cache) or a filled one.
VARIANTS = [
    ("engine", ["--no-cache"], None, None, None),
    ("cache warm", ["--cache-dir", "{work}/cache"], warm_cache,
     ["one 1 GiB image, tar", "spec, tar"], None),
    ("registry cold", ["--source", "registry", "--no-cache"], start_registry,
     ["one 1 GiB image, tar"], "one-registry"),
    ("registry cached", ["--source", "registry", "--cache-dir", "{work}/regcache"], None,
     ["one 1 GiB image, tar"], "one-registry"),
]


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def have(image):
    return subprocess.run(["docker", "image", "inspect", image],
                          capture_output=True).returncode == 0


def import_tar(name, write, changes=('CMD ["/bin/sh"]',)):
    """`docker import` of the tar that `write(tarfile)` writes, streamed through a pipe."""
    if have(name):
        return
    cmd = ["docker", "import"]
    for c in changes:
        cmd += ["-c", c]
    p = subprocess.Popen(cmd + ["-", name], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    with tarfile.open(fileobj=p.stdin, mode="w|", format=tarfile.GNU_FORMAT) as tf:
        write(tf)
    p.stdin.close()
    if p.wait() != 0:
        sys.exit(f"docker import {name} failed")


class RandomReader(io.RawIOBase):
    """`size` pseudo-random (incompressible) bytes from `seed`."""

    def __init__(self, size, seed):
        self.left, self.rng = size, random.Random(seed)

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.rng.randbytes(n)


def add_file(tf, path, size, fileobj, mode=0o644):
    ti = tarfile.TarInfo(path)
    ti.size, ti.mode, ti.mtime = size, mode, 1_492_533_000
    tf.addfile(ti, fileobj)


def add_dir(tf, path):
    ti = tarfile.TarInfo(path)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_492_533_000
    tf.addfile(ti)


def big_image(seed, scale):
    """6 random files of 160 MiB and 20,000 small text files (sizes divided by `scale`)."""
    def write(tf):
        add_dir(tf, "data")
        for i in range(6):
            size = 160 * MIB // scale
            add_file(tf, f"data/random-{i}.bin", size, RandomReader(size, seed * 100 + i))
        rng = random.Random(seed)
        words = [f"word{i}" for i in range(500)]
        for d in range(20_000 // scale // 100):
            add_dir(tf, f"small/{d:03}")
            for f in range(100):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(10, 800)))
                data = (text + "\n").encode()
                add_file(tf, f"small/{d:03}/f{f:03}.txt", len(data), io.BytesIO(data))
    return write


def host_files(paths):
    """The given host paths (files, directories, symlinks) at the same place."""
    def write(tf):
        for p in paths:
            tf.add(p, arcname=p.lstrip("/"))
    return write


def kernel_image(tf):
    vmlinuz = sorted(glob.glob("/boot/vmlinuz-*"))[-1]
    ver = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    tf.add(vmlinuz, arcname="kernel")
    buf = tempfile.TemporaryFile()
    mods_dir = "/lib/modules/" + ver
    with tarfile.open(fileobj=buf, mode="w") as mods:
        # The module lists and ~80 MB of modules (all of Debian's would be 400 MB, far more
        # than a LinuxKit kernel image carries).
        for p in sorted(glob.glob(mods_dir + "/modules.*")) + [
                mods_dir + "/kernel/" + d for d in ["fs", "net", "crypto", "lib", "arch"]]:
            if os.path.exists(p):
                mods.add(p, arcname=p.lstrip("/"))
    size = buf.tell()
    buf.seek(0)
    add_file(tf, "kernel.tar", size, buf)


def make_images(tag):
    scale = 10 if tag == "small" else 1
    names = {k: f"{PREFIX}/{k}:{tag}" for k in ["kernel", "init", "big1", "big2", "small"]}
    import_tar(names["kernel"], kernel_image, ['CMD ["/kernel"]'])
    import_tar(names["init"], host_files(["/usr/bin/busybox", "/usr/share/doc"]))
    import_tar(names["big1"], big_image(1, scale))
    import_tar(names["big2"], big_image(2, scale))
    import_tar(names["small"], host_files(["/usr/bin/busybox"]))
    return names


def write_specs(work, names):
    one = os.path.join(work, "one.yml")
    with open(one, "w") as f:
        f.write(f"init:\n  - {names['big1']}\n")
    spec = os.path.join(work, "spec.yml")
    with open(spec, "w") as f:
        f.write(f"kernel:\n  image: {names['kernel']}\n  cmdline: console=ttyS0\n"
                f"init:\n  - {names['init']}\n"
                f"onboot:\n  - name: big1\n    image: {names['big1']}\n"
                f"services:\n  - name: big2\n    image: {names['big2']}\n"
                f"  - name: small\n    image: {names['small']}\n")
    return {"one": one, "spec": spec}


def timed(cmd, **kw):
    """Runs `cmd` under GNU time: (wall s, CPU s, peak RSS KiB)."""
    with tempfile.NamedTemporaryFile(mode="r") as t:
        start = time.monotonic()
        code = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name, *cmd],
                              **kw).returncode
        wall = time.monotonic() - start
        if code != 0:
            sys.exit(f"{' '.join(cmd)} failed with {code}")
        user, system, rss = t.read().split()[-3:]
        return wall, float(user) + float(system), int(rss)


def export_floor(images, out_dir):
    """Seconds for the engine alone: for each image in turn, create a container, export it
    (to /dev/null, or to a file in `out_dir`, synced, then deleted) and remove it."""
    start = time.monotonic()
    for i, image in enumerate(images):
        cid = subprocess.run(["docker", "create", image, "/dev/null"], check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            if out_dir is None:
                sh("docker", "export", cid, stdout=subprocess.DEVNULL)
            else:
                path = os.path.join(out_dir, f"floor-{i}.tar")
                with open(path, "wb") as f:
                    sh("docker", "export", cid, stdout=f)
                    os.fsync(f.fileno())
        finally:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    wall = time.monotonic() - start
    if out_dir is not None:
        for i in range(len(images)):
            os.remove(os.path.join(out_dir, f"floor-{i}.tar"))
    return wall


def write_floor(src, work):
    """Seconds to write a copy of `src` (the spec's tar) beside it and fsync it: what any
    build of that output costs at least, whatever it reads (`shutil.copyfile`, which is
    in-kernel on Linux)."""
    import shutil
    dst = os.path.join(work, "write-floor.tar")
    start = time.monotonic()
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    wall = time.monotonic() - start
    os.remove(dst)
    return wall


def direct_floor(src, work):
    """Seconds to write a copy of `src` (a build's tar output, read from the page cache)
    with direct I/O and fsync it (`dd oflag=direct conv=fsync`, 512 KiB at a time): the
    disk's best for that output, which a warm build, bound by writing its output, can
    approach but not beat. The source is read once before the timing so that it is cached,
    as a warm build's cache entries are."""
    with open(src, "rb") as f:
        while f.read(8 * MIB):
            pass
    dst = os.path.join(work, "direct-floor.tar")
    start = time.monotonic()
    sh("dd", f"if={src}", f"of={dst}", "bs=512K", "oflag=direct", "conv=fsync",
       "status=none")
    wall = time.monotonic() - start
    os.remove(dst)
    return wall


def settle():
    """Syncs the disk and waits 3 s: each measurement starts from a quiet disk (a file
    system mounted with `discard`, as this machine's is, trims what the previous case
    deleted after it is gone)."""
    os.sync()
    time.sleep(3)


def du(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    return os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the bench images")
    ap.add_argument("--small", action="store_true", help="every size / 10: a quick check")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "imagesmith"),
                    help="the imagesmith binary (default: the release build)")
    opts = ap.parse_args()
    if not os.path.exists(opts.bin):
        sys.exit(f"{opts.bin} missing: cargo build --release")
    tag = "small" if opts.small else "1"
    work = tempfile.mkdtemp(prefix="imagesmith-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    names = {}
    cleanup = []
    try:
        print("making the images…", file=sys.stderr)
        names = make_images(tag)
        specs = write_specs(work, names)
        spec_images = [names[k] for k in ["kernel", "init", "big1", "big2", "small"]]
        floors = {
            "one": lambda: export_floor([names["big1"]], None),
            "spec": lambda: export_floor(spec_images, work),
            "spec -> /dev/null": lambda: export_floor(spec_images, None),
        }
        rows = [(c, v) for v in VARIANTS for c in CASES if v[3] is None or c.name in v[3]]
        ctx = {"work": work, "bin": opts.bin, "specs": specs, "names": names,
               "cleanup": cleanup}
        for _, _, setup, _, _ in VARIANTS:
            if setup:
                setup(ctx)
        # The tar outputs of both specs, for the write floors.
        ref = os.path.join(work, "ref.tar")
        ref_one = os.path.join(work, "ref-one.tar")
        for path, spec in [(ref, specs["spec"]), (ref_one, specs["one"])]:
            sh(opts.bin, "-q", "build", "--cache-dir", os.path.join(work, "cache"), "-o",
               path, spec)
        floors["write: spec's tar copied + fsync"] = lambda: write_floor(ref, work)
        floors["write direct: one's tar"] = lambda: direct_floor(ref_one, work)
        floors["write direct: spec's tar"] = lambda: direct_floor(ref, work)
        walls = {k: [] for k in floors}
        res = {(c.name, v[0]): {"wall": [], "cpu": [], "rss": [], "size": 0} for c, v in rows}
        for r in range(opts.runs):
            print(f"round {r + 1}/{opts.runs}", file=sys.stderr)
            # Every other round runs the cases in reverse order, so that no case always
            # follows the same one; before each, the disk is synced and left to settle
            # (what the previous case deleted is not written back on this one's time).
            forward = r % 2 == 0
            for k, f in (list(floors.items()) if forward else reversed(floors.items())):
                settle()
                walls[k].append(f())
                print(f"  floor: {k}: {walls[k][-1]:.2f} s", file=sys.stderr)
            for c, (vname, vargs, _, _, vspec) in (rows if forward else reversed(rows)):
                settle()
                out = os.path.join(work, "out")
                vargs = [a.replace("{work}", work) for a in vargs]
                cmd = [opts.bin, "-q", "build", *c.args, *vargs]
                cmd += ["--dir", out, "--name", "b"] if c.multi else ["-o", out]
                wall, cpu, rss = timed(cmd + [specs[vspec or c.spec]])
                print(f"  {c.name} [{vname}]: {wall:.2f} s, CPU {cpu:.2f} s, "
                      f"{rss / 1024:.1f} MiB", file=sys.stderr)
                m = res[(c.name, vname)]
                m["wall"].append(wall)
                m["cpu"].append(cpu)
                m["rss"].append(rss)
                m["size"] = du(out)
                sh("rm", "-rf", out)
        floor = {k: statistics.median(v) for k, v in walls.items()}
        tar_ref = statistics.median(res[("spec, tar", VARIANTS[0][0])]["wall"])
        size = "1/10 sizes (--small)" if opts.small else "full sizes"
        print(f"\n{size}; median of {opts.runs} runs, rounds alternating every case\n")
        head = ["case", "wall s", "CPU s", "peak RSS MiB", "output MiB", "vs floor",
                "vs spec tar / cold"]
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        for k, w in floor.items():
            what = "" if k.startswith("write") else " (engine alone)"
            print(f"| floor: {k}{what} | {w:.2f} | | | | | |")
        for c, (vname, _, _, _, _) in rows:
            m = res[(c.name, vname)]
            wall = statistics.median(m["wall"])
            name = c.name if len(VARIANTS) == 1 else f"{c.name} [{vname}]"
            vs_tar = f"{wall / tar_ref:.2f}×" if c.vs_tar else ""
            if vname != VARIANTS[0][0]:
                cold = statistics.median(res[(c.name, VARIANTS[0][0])]["wall"])
                vs_tar = f"{wall / cold:.2f}× the engine row"
                if c.spec == "spec":
                    write = floor["write: spec's tar copied + fsync"]
                    vs_tar += f", {wall / write:.2f}× the write floor"
                direct = floor[f"write direct: {c.spec}'s tar"]
                vs_tar += f", {wall / direct:.2f}× the direct write floor"
            print(f"| {name} | {wall:.2f} | {statistics.median(m['cpu']):.2f} "
                  f"| {max(m['rss']) / 1024:.1f} | {m['size'] / MIB:.0f} "
                  f"| {wall / floor[c.floor]:.2f}× ({c.floor}) | {vs_tar} |")
        # What the disk allows a warm build: its direct write floor against the cold build.
        print()
        for spec, case in [("one", "one 1 GiB image, tar"), ("spec", "spec, tar")]:
            cold = statistics.median(res[(case, VARIANTS[0][0])]["wall"])
            direct = floor[f"write direct: {spec}'s tar"]
            print(f"{spec}: writing its output with direct I/O takes {direct / cold:.2f}× "
                  f"its cold build (rounds: "
                  + ", ".join(f"{w:.2f}" for w in walls[f"write direct: {spec}'s tar"])
                  + " s)")
    finally:
        for undo in cleanup:
            undo()
        sh("rm", "-rf", work)
        if not opts.keep and names:
            subprocess.run(["docker", "rmi", *names.values()], capture_output=True)


if __name__ == "__main__":
    main()
