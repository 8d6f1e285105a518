#!/usr/bin/env python3
"""Benchmark cachegate's save and restore against the tools the peers use, in one run.

usage: scripts/bench.py [--files N] [--rounds R] [--work DIR] [--markdown] [--s3]

Builds the release binary, writes the deterministic node_modules-like tree from
shared/bench/make-tree.py, then alternates A B A B for each pair and reports medians,
ratios and peak RSS (from /usr/bin/time). Timings are wall clock on this machine; only
the ratios travel between machines.

--work DIR puts the tree, the stores and the archives in DIR: point it at the kind of
filesystem CI jobs run on. Restores create tens of thousands of inodes, so a filesystem
that has just deleted as many (every round deletes the previous restore) can slow all
the tools down unevenly; a fresh one gives steadier figures.

--s3 instead starts a single-node Garage on loopback (needs `garage` on PATH:
`cargo install garage --locked`) and compares restoring the same entry from it with
restoring from the local directory store.

--network puts Garage and nginx behind a throttling proxy on loopback (scripts/throttle.py:
--rate bytes/s per connection, --link-rate bytes/s for all connections together, --latency
seconds each way) and restores a --net-files tree
(1 GB by default) and a --blob-mb tree of --blob-files incompressible files (prebuilt
binaries) over it: one stream (--concurrency 1), the parallel default, "download the whole
archive, then extract" (what gitlab-runner does, nginx only) and, as the floor, a restore from
a local directory store; a local-tier hit against a remote hit; ls and prune over many
synthetic entries (--ls-dir, --ls-http and --ls-s3 counts) with their peak RSS; and --load
concurrent hits against Garage with p50/p99 and the failures. --net-parts picks among tree,
blob, scale and load.
"""
import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# shared/bench beside the checkout (or beside a worktree's parent directory).
MAKE_TREE = next((p for p in (os.path.join(ROOT, *up, "shared", "bench", "make-tree.py")
                              for up in ((".."), ("..", ".."))) if os.path.exists(p)),
                 os.path.join(ROOT, "..", "shared", "bench", "make-tree.py"))


def sh(cmd, cwd=None, env=None):
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(cmd, cwd, env=None):
    """Wall seconds and peak RSS (KiB) of one shell command."""
    # Write back what the previous command left dirty, so no tool pays for another's files.
    os.sync()
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", cmd], cwd=cwd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"benchmark command failed: {cmd}\n{out.stderr}")
    rss = int(out.stderr.strip().splitlines()[-1])
    return dt, rss


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if not os.path.islink(os.path.join(d, f)))


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def start_garage(work):
    """A single-node Garage in WORK; returns (process, endpoint, env with its keys)."""
    garage = shutil.which("garage") or os.path.expanduser("~/.cargo/bin/garage")
    if not os.path.exists(garage):
        sys.exit("garage is needed for --s3: cargo install garage --locked")
    d = os.path.join(work, "garage")
    os.makedirs(d, exist_ok=True)
    s3, rpc, admin = free_port(), free_port(), free_port()
    conf = os.path.join(d, "garage.toml")
    with open(conf, "w") as f:
        f.write(f"""metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secrets.token_hex(32)}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{secrets.token_hex(24)}"
""")
    key, secret = "GK" + secrets.token_hex(12), secrets.token_hex(32)
    genv = dict(os.environ, GARAGE_CONFIG_FILE=conf, GARAGE_DEFAULT_ACCESS_KEY=key,
                GARAGE_DEFAULT_SECRET_KEY=secret, GARAGE_DEFAULT_BUCKET="bench", RUST_LOG="warn")
    log = open(os.path.join(d, "log"), "w")
    proc = subprocess.Popen([garage, "server", "--single-node", "--default-bucket"], env=genv,
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while b"127.0.0.1" not in subprocess.run([garage, "status"], env=genv, capture_output=True).stdout:
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit(f"garage did not start; see {d}/log")
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{s3}", {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}


def s3_mode(args, cg, work, proj, tree, env, nfiles, size):
    proc, endpoint, keys = start_garage(work)
    try:
        env = dict(env, **keys)
        store = os.path.join(work, "store")
        s3 = f"'s3://bench/cg?endpoint={endpoint}&region=garage'"
        base = "--lock package-lock.json --backend"
        shutil.rmtree(store, ignore_errors=True)
        sh(f"{cg} doctor --backend {s3}", cwd=proj, env=env)
        times = {"s3_save": [], "dir_save": [], "s3": [], "dir": []}
        rss = {k: 0 for k in times}
        t, m = timed(f"{cg} save {base} {s3}", proj, env)
        times["s3_save"].append(t); rss["s3_save"] = m
        t, m = timed(f"{cg} save {base} {store}", proj, env)
        times["dir_save"].append(t); rss["dir_save"] = m
        for _ in range(args.rounds):
            for which, backend in (("dir", store), ("s3", s3)):
                shutil.rmtree(tree, ignore_errors=True)
                t, m = timed(f"{cg} restore {base} {backend}", proj, env)
                times[which].append(t); rss[which] = max(rss[which], m)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"tree: {nfiles:,} files, {size / 1e6:.0f} MB; {args.rounds} rounds alternating; "
              f"{os.cpu_count()} cores; medians; Garage on loopback")
        print()
        print("| what | S3 (local Garage) | local directory | ratio | peak RSS S3 / dir |")
        print("|---|---|---|---|---|")
        print(f"| restore | {med['s3']:.2f} s | {med['dir']:.2f} s | {med['s3'] / med['dir']:.2f}x | "
              f"{rss['s3'] / 1024:.0f} MB / {rss['dir'] / 1024:.0f} MB |")
        print(f"| save (once) | {med['s3_save']:.2f} s | {med['dir_save']:.2f} s | "
              f"{med['s3_save'] / med['dir_save']:.2f}x | "
              f"{rss['s3_save'] / 1024:.0f} MB / {rss['dir_save'] / 1024:.0f} MB |")
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", default=None)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--s3", action="store_true", help="restore from a local Garage vs a directory")
    ap.add_argument("--network", action="store_true", help="restores over a throttled link")
    ap.add_argument("--rate", type=float, default=25e6, help="bytes/s per connection")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds each way")
    ap.add_argument("--link-rate", type=float, default=125e6,
                    help="bytes/s all connections share each way (1 Gbit/s); 0: no shared cap")
    ap.add_argument("--net-files", type=int, default=110_000, help="files in the network tree")
    ap.add_argument("--blob-mb", type=int, default=1024, help="MB of incompressible files")
    ap.add_argument("--blob-files", type=int, default=256)
    ap.add_argument("--ls-dir", default="25000,50000,100000")
    ap.add_argument("--ls-s3", default="5000,10000,20000")
    ap.add_argument("--ls-http", default="25000,50000,100000")
    ap.add_argument("--load", type=int, default=50)
    ap.add_argument("--net-parts", default="tree,blob,scale,load",
                    help="which --network figures to take (comma-separated)")
    args = ap.parse_args()

    for tool in ("zstd", "tar", "zip", "unzip", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install -y zstd tar zip unzip time")
    sh("cargo build --release --locked --quiet", cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    cg = os.path.join(target, "release", "cachegate")
    if args.network:
        import netbench
        netbench.run(args, cg, start_garage, timed, sh, du, MAKE_TREE)
        return

    work = args.work or tempfile.mkdtemp(prefix="cachegate-bench-")
    proj = os.path.join(work, "proj")
    os.makedirs(proj, exist_ok=True)
    tree = os.path.join(proj, "node_modules")
    if not os.path.isdir(tree):
        sh(f"python3 {MAKE_TREE} {tree} --files {args.files}")
    with open(os.path.join(proj, "package-lock.json"), "w") as f:
        f.write('{"bench": true}\n')
    size = du(tree)
    nfiles = sum(len(fs) for _, _, fs in os.walk(tree))

    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("CACHEGATE_", "GITLAB_", "CI_")):
            del env[k]
    if args.s3:
        s3_mode(args, cg, work, proj, tree, env, nfiles, size)
        if not args.work:
            shutil.rmtree(work)
        return

    store = os.path.join(work, "store")
    cg_args = f"--lock package-lock.json --backend {store}"
    tarball = os.path.join(work, "ref.tar.zst")
    zipball = os.path.join(work, "ref.zip")
    out = os.path.join(work, "out")

    sh(f"cd {proj} && zip -qr -1 {zipball} node_modules --symlinks")

    results = {k: [] for k in ("cg_save", "tar_save", "cg_restore", "tar_restore", "unzip", "cg_check",
                               "cg_check_noprobe", "py_key", "py_key_noprobe", "true")}
    # A Python project for the interpreter probe (the npm tree above probes node).
    pyproj = os.path.join(work, "pyproj")
    os.makedirs(pyproj, exist_ok=True)
    with open(os.path.join(pyproj, "requirements.txt"), "w") as f:
        f.write("requests==2.32.3\n")
    rss = {k: 0 for k in results}
    for _ in range(args.rounds):
        shutil.rmtree(store, ignore_errors=True)
        t, m = timed(f"{cg} save {cg_args}", proj, env)
        results["cg_save"].append(t); rss["cg_save"] = max(rss["cg_save"], m)
        t, m = timed(f"tar -cf - node_modules | zstd -T0 -3 -q -f -o {tarball}", proj, env)
        results["tar_save"].append(t); rss["tar_save"] = max(rss["tar_save"], m)

        # Restores start from an absent target, the state of a fresh CI workspace.
        shutil.rmtree(tree)
        t, m = timed(f"{cg} restore {cg_args}", proj, env)
        results["cg_restore"].append(t); rss["cg_restore"] = max(rss["cg_restore"], m)
        shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
        t, m = timed(f"tar -I zstd -xf {tarball}", out, env)
        results["tar_restore"].append(t); rss["tar_restore"] = max(rss["tar_restore"], m)
        shutil.rmtree(out); os.makedirs(out)
        t, m = timed(f"unzip -q {zipball}", out, env)
        results["unzip"].append(t); rss["unzip"] = max(rss["unzip"], m)
        shutil.rmtree(out)

        # The same entry keyed without the runtime, so both checks below are hits.
        sh(f"{cg} save --no-runtime-key {cg_args}", cwd=proj, env=env)
        for _ in range(10):
            t, _m = timed(f"{cg} check {cg_args}", proj, env)
            results["cg_check"].append(t)
            # The runtime probe's share: the same hit check without it.
            t, _m = timed(f"{cg} check --no-runtime-key {cg_args}", proj, env)
            results["cg_check_noprobe"].append(t)
            t, _m = timed(f"{cg} key --lock requirements.txt", pyproj, env)
            results["py_key"].append(t)
            t, _m = timed(f"{cg} key --no-runtime-key --lock requirements.txt", pyproj, env)
            results["py_key_noprobe"].append(t)
            t, _m = timed("true", proj, env)
            results["true"].append(t)

    # The key: a --lock directory of many small files (the walk and the opens cost most) and
    # one large file (the hashing itself), each against only reading the same bytes.
    big = os.path.join(proj, "big.lock")
    with open(zipball, "rb") as src, open(big, "wb") as dst:
        chunk = src.read()
        while dst.tell() < 512 << 20:
            dst.write(chunk)
    big_size = os.path.getsize(big)
    for k in ("key_tree", "read_tree", "key_big", "read_big"):
        results[k] = []
        rss[k] = 0
    for _ in range(args.rounds):
        results["key_tree"].append(timed(f"{cg} key --lock node_modules --path x", proj, env)[0])
        results["read_tree"].append(
            timed("find node_modules -type f -exec cat {} + > /dev/null", proj, env)[0])
        results["key_big"].append(timed(f"{cg} key --lock big.lock --path x", proj, env)[0])
        results["read_big"].append(timed("cat big.lock > /dev/null", proj, env)[0])
    os.remove(big)

    med = {k: statistics.median(v) for k, v in results.items()}
    archive = [f for f in os.listdir(os.path.join(store, "v1", "local", "npm")) if f.endswith(".tar.zst")][0]
    cg_size = os.path.getsize(os.path.join(store, "v1", "local", "npm", archive))
    ref_size = os.path.getsize(tarball)

    rows = [
        ("save", "cachegate save", med["cg_save"], "tar -cf - \\| zstd -T0 -3", med["tar_save"], rss["cg_save"], rss["tar_save"]),
        ("restore", "cachegate restore", med["cg_restore"], "tar -I zstd -xf", med["tar_restore"], rss["cg_restore"], rss["tar_restore"]),
        ("restore vs zip", "cachegate restore", med["cg_restore"], "unzip -q (deflate zip)", med["unzip"], rss["cg_restore"], rss["unzip"]),
        ("hit check", "cachegate check", med["cg_check"], "true", med["true"], 0, 0),
        ("runtime probe (node), hit check", "cachegate check", med["cg_check"],
         "check --no-runtime-key", med["cg_check_noprobe"], 0, 0),
        ("runtime probe (python), key", "cachegate key", med["py_key"],
         "key --no-runtime-key", med["py_key_noprobe"], 0, 0),
        (f"key, --lock dir ({nfiles:,} files)",
         f"cachegate key, {size / med['key_tree'] / 1e9:.2f} GB/s", med["key_tree"],
         "find -exec cat (reading only)", med["read_tree"], 0, 0),
        (f"key, one {big_size >> 20} MB file",
         f"cachegate key, {big_size / med['key_big'] / 1e9:.2f} GB/s", med["key_big"],
         "cat (reading only)", med["read_big"], 0, 0),
    ]
    print(f"tree: {nfiles:,} files, {size / 1e6:.0f} MB; {args.rounds} rounds alternating; "
          f"{os.cpu_count()} cores; medians")
    print()
    print("| what | cachegate | peer | ratio | peak RSS cachegate / peer |")
    print("|---|---|---|---|---|")
    for what, a, ta, b, tb, ra, rb in rows:
        ratio = ta / tb if not what.startswith(("hit check", "runtime probe")) else None
        rs = f"{ra / 1024:.0f} MB / {rb / 1024:.0f} MB" if ra else "-"
        if ratio is None:
            print(f"| {what} | {a}: {ta * 1000:.1f} ms | {b}: {tb * 1000:.1f} ms | overhead {1000 * (ta - tb):.1f} ms | {rs} |")
        else:
            print(f"| {what} | {a}: {ta:.2f} s | {b}: {tb:.2f} s | {ratio:.2f}x | {rs} |")
    print(f"| archive size | {cg_size / 1e6:.1f} MB | {ref_size / 1e6:.1f} MB | {cg_size / ref_size:.2f}x | |")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
