#!/usr/bin/env python3
"""Build benchmark (SPEC §7): time and peak memory of `imagesmith build` against the floor,
which is reading every export from the engine once.

Usage (after scripts/setup.sh and `cargo build --release`):
    python3 benches/build.py [--runs N] [--keep]

It makes three local images from this machine's files (removed at the end unless --keep):
  bench/kernel  Debian's /boot/vmlinuz + /lib/modules as kernel.tar (a LinuxKit kernel image)
  bench/lib     /usr/lib/x86_64-linux-gnu (many files, ~1 GB)
  bench/share   /usr/share (very many small files)
and builds a spec with the kernel, `bench/lib` as init, and `bench/lib`, `bench/share` as
onboot/service bundles (`bench/lib` is exported twice: at / and in a bundle). It prints, per
configuration, the median wall time over the runs, the throughput relative to the export floor
and the peak RSS (GNU time %M), as a table.
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "imagesmith")
CONFIGS = [("tar", 1), ("tar", 2), ("tar", 4), ("tar.gz", 2), ("kernel+initrd", 2)]


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def have(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def import_dir(name, src_dirs, work, changes=()):
    """docker import of a tar of the given directories (kept at their absolute paths)."""
    if have(name):
        return
    tar = os.path.join(work, "ctx.tar")
    sh("tar", "--numeric-owner", "-cf", tar, *[d.lstrip("/") for d in src_dirs], cwd="/")
    cmd = ["docker", "import"]
    for c in changes:
        cmd += ["-c", c]
    sh(*cmd, tar, name, stdout=subprocess.DEVNULL)
    os.remove(tar)


def make_kernel(work):
    if have("bench/kernel:1"):
        return
    ctx = os.path.join(work, "kernel")
    os.makedirs(ctx)
    vmlinuz = sorted(glob.glob("/boot/vmlinuz-*"))[-1]
    ver = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    sh("cp", vmlinuz, os.path.join(ctx, "kernel"))
    sh("tar", "-cf", os.path.join(ctx, "kernel.tar"), "lib/modules/" + ver, cwd="/")
    tar = os.path.join(work, "k.tar")
    sh("tar", "-cf", tar, "-C", ctx, "kernel", "kernel.tar")
    sh("docker", "import", "-c", 'CMD ["/kernel"]', tar, "bench/kernel:1", stdout=subprocess.DEVNULL)
    sh("rm", "-rf", ctx, tar)


def export_floor(image):
    """Seconds and bytes to read one export of `image` through the engine, nothing else."""
    cid = subprocess.run(["docker", "create", image, "/dev/null"], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        t = time.monotonic()
        p = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        n = 0
        while True:
            b = p.stdout.read(1 << 20)
            if not b:
                break
            n += len(b)
        p.wait()
        return time.monotonic() - t, n
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def run_build(args, out=None):
    """Wall seconds and peak RSS (KiB) of one build. The peak comes from GNU time (%M):
    wait4's ru_maxrss of our own child would include this Python process's high-water mark,
    which a child started with vfork + exec inherits."""
    rss = tempfile.NamedTemporaryFile()
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss.name, BIN, "-q", "build", *args]
    if out:
        cmd += ["-o", out]
    t = time.monotonic()
    code = subprocess.run(cmd).returncode
    if code != 0:
        sys.exit(f"imagesmith build {' '.join(args)} failed with {code}")
    wall = time.monotonic() - t
    return wall, int(open(rss.name).read().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the bench images")
    ap.add_argument("--formats", default=",".join(sorted({f for f, _ in CONFIGS})),
                    help="comma-separated formats to measure")
    opts = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build the release binary first: cargo build --release")
    work = tempfile.mkdtemp(prefix="imagesmith-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        make_kernel(work)
        import_dir("bench/lib:1", ["/usr/lib/x86_64-linux-gnu"], work, ['CMD ["/bin/sh"]'])
        import_dir("bench/share:1", ["/usr/share"], work, ['CMD ["/bin/sh"]'])
        spec = os.path.join(work, "bench.yml")
        with open(spec, "w") as f:
            f.write("kernel:\n  image: bench/kernel:1\n  cmdline: console=ttyS0\n"
                    "init:\n  - bench/lib:1\n"
                    "onboot:\n  - name: lib\n    image: bench/lib:1\n"
                    "services:\n  - name: share\n    image: bench/share:1\n")
        # The floor: every export the build makes, read once (kernel, lib twice, share).
        floors = []
        for _ in range(opts.runs):
            total_t, total_n = 0.0, 0
            for img in ["bench/kernel:1", "bench/lib:1", "bench/lib:1", "bench/share:1"]:
                t, n = export_floor(img)
                total_t += t
                total_n += n
            floors.append(total_t)
        floor = statistics.median(floors)
        mib = total_n / (1 << 20)
        rows = [("export floor (docker export, sequential)", floor, None, mib)]
        out = os.path.join(work, "out")
        for fmt, jobs in [c for c in CONFIGS if c[0] in opts.formats.split(",")]:
            times, rss = [], []
            for _ in range(opts.runs):
                args = [spec, "-f", fmt, "--jobs", str(jobs)]
                if fmt == "kernel+initrd":
                    args += ["--dir", out + ".d", "--name", "b"]
                    t, r = run_build(args)
                else:
                    t, r = run_build(args, out)
                times.append(t)
                rss.append(r)
            rows.append((f"imagesmith -f {fmt} --jobs {jobs}", statistics.median(times), max(rss), mib))
        print(f"\n{total_n / (1 << 20):.0f} MiB of exports per build "
              f"(kernel, /usr/lib at / and in a bundle, /usr/share); median of {opts.runs} runs\n")
        print(f"| {'configuration':44} | {'wall s':>7} | {'MiB/s':>7} | {'vs floor':>8} | {'peak RSS MiB':>12} |")
        print(f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 14}|")
        for name, t, r, m in rows:
            rss_s = f"{r / 1024:.1f}" if r is not None else "-"
            print(f"| {name:44} | {t:7.2f} | {m / t:7.0f} | {t / floor:7.2f}x | {rss_s:>12} |")
    finally:
        sh("rm", "-rf", work)
        if not opts.keep:
            subprocess.run(["docker", "rmi", "bench/kernel:1", "bench/lib:1", "bench/share:1"],
                           capture_output=True)


if __name__ == "__main__":
    main()
